"""The append-only SQLite audit store, safe for several processes writing one file.

WAL journal, ``synchronous=NORMAL`` and a busy timeout let the auth server, the services and the
workers append to the same file at once. Each :meth:`AuditStore.append` is its own committed
``BEGIN IMMEDIATE`` transaction (record and writer head together), so a process crash loses at
most the record in flight; with ``synchronous=NORMAL`` an OS crash or power loss may also roll
back the last commits, which then shows up as nothing missing (the head rolls back with them).

Triggers refuse ``UPDATE`` and ``DELETE`` on records and any head move other than one step
forward; they stop mistakes, not an attacker who can drop them. :meth:`AuditStore.verify` is what
detects tampering (see :mod:`orchestrator.audit._verify` and the keyless-chain caveat in
:mod:`orchestrator.audit._chain`); signed checkpoints (:mod:`orchestrator.audit._checkpoint`,
written through :meth:`AuditStore.on_append` and :meth:`AuditStore.transaction`) are what a
recomputed chain cannot get past.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator._sqlite import SQLiteFile, connect
from orchestrator.audit._chain import GENESIS_HASH, link_hash
from orchestrator.audit._checkpoint import SELECT_ALL as _SELECT_CHECKPOINTS
from orchestrator.audit._checkpoint import CheckpointRow
from orchestrator.audit._record import (
    CONTENT_FIELDS,
    AuditRecord,
    Decision,
    StoredRecord,
    contains_raw_jwt,
    format_time,
)
from orchestrator.audit._schema import JSON_FIELDS, SCHEMA_VERSION, STATEMENTS
from orchestrator.audit._verify import ChainRow, Head, VerifyReport, verify_rows
from orchestrator.errors import ConfigError, Unavailable

BUSY_TIMEOUT_SECONDS = 5.0
_CHAIN_COLUMNS = ("id", "writer", "seq", "prev_hash", "hash")
_COLUMNS = ", ".join(_CHAIN_COLUMNS + CONTENT_FIELDS)
_STORED_FIELDS = frozenset(StoredRecord.model_fields)
_INSERT = (
    f"INSERT INTO records (writer, seq, prev_hash, hash, {', '.join(CONTENT_FIELDS)}) "
    f"VALUES ({', '.join('?' * (4 + len(CONTENT_FIELDS)))})"
)
_SET_HEAD = (
    "INSERT INTO writers (writer, last_seq, last_hash) VALUES (?, ?, ?) "
    "ON CONFLICT (writer) DO UPDATE SET last_seq = excluded.last_seq, "
    "last_hash = excluded.last_hash"
)
_FILTERS = {
    "user": "on_behalf_of = ?",
    "agent": "performed_by = ?",
    "run_id": "run_id = ?",
    "service": "service = ?",
    "action": "action = ?",
    "decision": "decision = ?",
    "since": "time >= ?",
    "until": "time < ?",
}


def default_writer() -> str:
    """Unique per process and per store instance: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AuditStore(SQLiteFile):
    """Append-only audit records in one SQLite file, hash-chained per writer.

    Thread-safe; use as a context manager or call :meth:`close`. ``writer`` names this
    instance's chain; reusing a name continues that chain from its head.
    """

    what = "audit store"

    def __init__(self, path: Path, writer: str | None = None, *, read_only: bool = False) -> None:
        """Open (creating it if missing) the database at ``path``; ``read_only`` opens an existing
        one without changing it (for checking a copy: no schema is applied, nothing written)."""
        self._writer = _check_writer(writer) if writer is not None else default_writer()
        self._hooks: list[Callable[[StoredRecord], None]] = []
        conn = _connect_read_only(Path(path)) if read_only else _connect(Path(path))
        super().__init__(Path(path), conn)

    @property
    def writer(self) -> str:
        return self._writer

    def on_append(self, hook: Callable[[StoredRecord], None]) -> None:
        """Call ``hook`` with each record this store appends, after its commit (the checkpointer
        counts records this way)."""
        self._hooks.append(hook)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one ``BEGIN IMMEDIATE`` write transaction, committed when the
        block ends; :class:`Unavailable` if the file cannot be written."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise Unavailable("audit store cannot be written") from exc

    def append(self, record: AuditRecord) -> StoredRecord:
        """Store one record in its own committed transaction; returns it with its chain fields."""
        content = record.content()
        with self._lock:
            conn = self._connection()
            try:
                row_id, seq, prev_hash, digest = self._insert(conn, content)
            except sqlite3.OperationalError as exc:
                raise Unavailable("audit store cannot be written") from exc
        # ``record`` was validated when it was built, and the chain fields are this store's own:
        # validating it all again (the raw-token scan included) cost half of an append.
        values = {name: getattr(record, name) for name in CONTENT_FIELDS}
        stored = StoredRecord.model_construct(
            _fields_set=set(_STORED_FIELDS), **values, id=row_id, writer=self._writer, seq=seq,
            prev_hash=prev_hash, hash=digest,
        )
        for hook in self._hooks:
            hook(stored)
        return stored

    def query(
        self,
        *,
        user: str | None = None,
        agent: str | None = None,
        run_id: str | None = None,
        service: str | None = None,
        action: str | None = None,
        decision: Decision | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[StoredRecord]:
        """Records matching every filter given, ordered by time then id.

        ``user`` is ``on_behalf_of``, ``agent`` is ``performed_by``; ``since`` is inclusive,
        ``until`` exclusive (both timezone-aware); ``limit`` keeps the first N.
        """
        given: dict[str, Any] = {
            "user": user,
            "agent": agent,
            "run_id": run_id,
            "service": service,
            "action": action,
            "decision": decision,
            "since": format_time(since) if since else None,
            "until": format_time(until) if until else None,
        }
        used = {name: value for name, value in given.items() if value is not None}
        where = " AND ".join(_FILTERS[name] for name in used) or "1"
        sql = f"SELECT {_COLUMNS} FROM records WHERE {where} ORDER BY time, id"
        params: list[Any] = list(used.values())
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._connection().execute(sql, params).fetchall()
        return [_stored(row) for row in rows]

    def verify(self) -> VerifyReport:
        """Walk every writer's chain; see :mod:`orchestrator.audit._verify` for the kinds."""
        snapshot = self.snapshot()
        return verify_rows(snapshot.rows, snapshot.heads)

    def snapshot(self) -> Snapshot:
        """Every record's chain fields and content, the writer heads and the checkpoints, read in
        one transaction (so a checkpoint never covers a record the read missed)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id").fetchall()
                heads = conn.execute("SELECT writer, last_seq, last_hash FROM writers").fetchall()
                checkpoints = _checkpoints(conn)
            finally:
                conn.execute("COMMIT")
        return Snapshot(
            [_chain_row(row) for row in rows],
            {writer: Head(last_seq, last_hash) for writer, last_seq, last_hash in heads},
            [CheckpointRow(*_typed(row, _CHECKPOINT_TYPES, "checkpoint")) for row in checkpoints],
        )

    def __repr__(self) -> str:
        return f"AuditStore({str(self._path)!r}, writer={self._writer!r})"

    def _insert(
        self, conn: sqlite3.Connection, content: dict[str, Any]
    ) -> tuple[int, int, str, str]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = conn.execute(
                "SELECT last_seq, last_hash FROM writers WHERE writer = ?", (self._writer,)
            ).fetchone()
            last_seq, prev_hash = head if head else (0, GENESIS_HASH)
            seq = last_seq + 1
            digest = link_hash(prev_hash, content, self._writer, seq)
            values = [_column_value(name, content[name]) for name in CONTENT_FIELDS]
            cursor = conn.execute(_INSERT, [self._writer, seq, prev_hash, digest, *values])
            conn.execute(_SET_HEAD, (self._writer, seq, digest))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        assert cursor.lastrowid is not None
        return cursor.lastrowid, seq, prev_hash, digest


@dataclass(frozen=True)
class Snapshot:
    """What :meth:`AuditStore.snapshot` read: all of it untrusted until verified."""

    rows: list[ChainRow]
    heads: dict[str, Head]
    checkpoints: list[CheckpointRow]


def _connect(path: Path) -> sqlite3.Connection:
    return connect(path, busy_timeout=BUSY_TIMEOUT_SECONDS, statements=STATEMENTS,
                   version=SCHEMA_VERSION, what="audit database")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """An existing audit database opened with ``mode=ro``: nothing is created or written;
    :class:`ConfigError` naming the file if it is not one."""
    if not path.is_file():
        raise ConfigError(f"no audit database at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                           timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"{path} is not a usable audit database: {exc}") from exc
    if version > SCHEMA_VERSION or not {"records", "writers"} <= tables:
        conn.close()
        problem = (f"schema version {version} is newer than this code ({SCHEMA_VERSION})"
                   if version > SCHEMA_VERSION else "it has no audit tables")
        raise ConfigError(f"{path} is not a usable audit database: {problem}")
    return conn


def _checkpoints(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The checkpoint rows; none in a file from before checkpoints (opened read-only)."""
    try:
        return conn.execute(_SELECT_CHECKPOINTS).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def _check_writer(writer: str) -> str:
    if not writer or len(writer) > 200 or contains_raw_jwt(writer):
        raise ValueError("writer must be a short non-empty name")
    return writer


def _column_value(name: str, value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if name in JSON_FIELDS else value


def _content(row: tuple[Any, ...]) -> dict[str, Any]:
    """The content dict of a stored row; raises ValueError if a JSON column does not decode."""
    values = dict(zip(CONTENT_FIELDS, row[len(_CHAIN_COLUMNS) :], strict=True))
    for name in JSON_FIELDS:
        values[name] = json.loads(values[name])
    return values


_CHAIN_TYPES = (int, str, int, str, str)
_CHECKPOINT_TYPES = (int, str, int, str, str, str, str, str, str)


def _typed(row: tuple[Any, ...], types: tuple[type, ...], what: str) -> tuple[Any, ...]:
    """``row`` if its leading columns have their types; a damaged file can break that
    (ValueError naming the row, never a TypeError deep in verification)."""
    if not all(type(value) is kind for value, kind in zip(row, types, strict=False)):
        raise ValueError(f"{what} {row[0]!r:.20} is damaged: a column does not hold its type")
    return row


def _chain_row(row: tuple[Any, ...]) -> ChainRow:
    _typed(row, _CHAIN_TYPES, "audit record")
    try:
        content: dict[str, Any] | None = _content(row)
    except (TypeError, ValueError, RecursionError):
        content = None
    row_id, writer, seq, prev_hash, digest = row[: len(_CHAIN_COLUMNS)]
    return ChainRow(row_id, writer, seq, prev_hash, digest, content)


def _stored(row: tuple[Any, ...]) -> StoredRecord:
    chain = dict(zip(_CHAIN_COLUMNS, row[: len(_CHAIN_COLUMNS)], strict=True))
    try:
        return StoredRecord.model_validate({**_content(row), **chain})
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(
            f"audit record id {chain['id']} cannot be read; run `infrabot audit verify`"
        ) from exc
