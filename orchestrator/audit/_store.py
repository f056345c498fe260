"""The append-only SQLite audit store, safe for several processes writing one file.

WAL journal, ``synchronous=NORMAL`` and a busy timeout let the auth server, the services and the
workers append to the same file at once. Each :meth:`AuditStore.append` is its own committed
``BEGIN IMMEDIATE`` transaction (record and writer head together), so a process crash loses at
most the record in flight; with ``synchronous=NORMAL`` an OS crash or power loss may also roll
back the last commits, which then shows up as nothing missing (the head rolls back with them).

Triggers refuse ``UPDATE`` and ``DELETE`` on records and any head move other than one step
forward; they stop mistakes, not an attacker who can drop them. :meth:`AuditStore.verify` is what
detects tampering (see :mod:`orchestrator.audit._verify` and the keyless-chain caveat in
:mod:`orchestrator.audit._chain`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator._sqlite import SQLiteFile, connect
from orchestrator.audit._chain import GENESIS_HASH, link_hash
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
from orchestrator.errors import Unavailable

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

    def __init__(self, path: Path, writer: str | None = None) -> None:
        self._writer = _check_writer(writer) if writer is not None else default_writer()
        super().__init__(Path(path), _connect(Path(path)))

    @property
    def writer(self) -> str:
        return self._writer

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
        return StoredRecord.model_construct(
            _fields_set=set(_STORED_FIELDS), **values, id=row_id, writer=self._writer, seq=seq,
            prev_hash=prev_hash, hash=digest,
        )

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
        with self._lock:
            conn = self._connection()
            rows = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id").fetchall()
            heads = conn.execute("SELECT writer, last_seq, last_hash FROM writers").fetchall()
        return verify_rows(
            (_chain_row(row) for row in rows),
            {writer: Head(last_seq, last_hash) for writer, last_seq, last_hash in heads},
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


def _connect(path: Path) -> sqlite3.Connection:
    return connect(path, busy_timeout=BUSY_TIMEOUT_SECONDS, statements=STATEMENTS,
                   version=SCHEMA_VERSION, what="audit database")


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


def _chain_row(row: tuple[Any, ...]) -> ChainRow:
    try:
        content: dict[str, Any] | None = _content(row)
    except (TypeError, ValueError):
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
