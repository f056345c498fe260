"""The append-only audit store, on a SQLite file or a PostgreSQL database (:mod:`orchestrator.db`).

The auth server, the services and the workers, on one host or many, append at once. An
:meth:`AuditStore.append` returns once its record is committed (record and writer head together),
so a process crash loses at most the records in flight, none acknowledged. Appends that arrive
while one is being written are group-committed: they wait for it, then go together in the next
transaction (:mod:`orchestrator.audit._group`), so under load one commit carries many records. The
transaction first locks its writer's head (:meth:`~orchestrator.db.Transaction.lock`: the whole
file on SQLite, an advisory lock on the writer's name on PostgreSQL), so two stores that share a
writer name, in any processes on any hosts, still extend its chain one record at a time; the
records are hashed before it starts, from the head the process last wrote, and the transaction is
one round trip (:mod:`orchestrator.audit._append`). On SQLite with ``synchronous=NORMAL`` an OS
crash or power loss may roll back the last commits, which then shows up as nothing missing (the
head rolls back with them).

On PostgreSQL a connection can be lost inside the append (its backend killed, the server
restarting). Whether the commit happened is then read back, under the writer's lock: a record is
stored if its writer's ``seq`` holds its hash. If it is, the append succeeded; if not, it is tried
once more on a fresh connection. So a record is never written twice, and an append that raises
stored nothing (unless the read-back itself failed: then the record may be there, as a
``ConnectionLost``).

Triggers refuse ``UPDATE`` and ``DELETE`` on records and any head move other than one step
forward; they stop mistakes, not an attacker who can drop them (:meth:`~AuditStore.missing_guards`
names any gone). :meth:`AuditStore.verify` detects tampering (:mod:`._verify`, and the keyless
chain's caveat in :mod:`._chain`); signed checkpoints (:mod:`._checkpoint`, written through
:meth:`~AuditStore.anchor_with`) are what a recomputed chain cannot get past.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.audit._append import Appended, ChainWriter, Prepared, prepare
from orchestrator.audit._checkpoint import SELECT_ALL as _SELECT_CHECKPOINTS
from orchestrator.audit._checkpoint import Checkpointer, CheckpointRow
from orchestrator.audit._group import GroupCommit
from orchestrator.audit._record import (
    CONTENT_FIELDS,
    AuditRecord,
    Decision,
    StoredRecord,
    contains_raw_jwt,
    format_time,
)
from orchestrator.audit._schema import JSON_FIELDS, SCHEMA
from orchestrator.audit._verify import ChainRow, Head, VerifyReport, heads_of, typed, verify_rows
from orchestrator.db import ConnectionLost, Database, Store, Transaction, open_database
from orchestrator.errors import Unavailable

CHECK_ATTEMPTS = 2
_CHAIN_COLUMNS = ("id", "writer", "seq", "prev_hash", "hash")
_COLUMNS = ", ".join(_CHAIN_COLUMNS + CONTENT_FIELDS)
_STORED_FIELDS = frozenset(StoredRecord.model_fields)
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


class AuditStore(Store):
    """Append-only audit records, hash-chained per writer, in a SQLite file (``target`` a path)
    or a PostgreSQL database (``target`` a ``postgresql://`` URL).

    Thread-safe; use as a context manager or call :meth:`close`. ``writer`` names this
    instance's chain; reusing a name continues that chain from its head.
    """

    def __init__(self, target: Path | str, writer: str | None = None, *,
                 read_only: bool = False) -> None:
        """Open (creating it if missing) the database at ``target``; ``read_only`` opens an
        existing one without changing it (to check it: no schema applied, not even on
        PostgreSQL, nothing written; :class:`~orchestrator.errors.ConfigError` if it is not one)."""
        self._writer = _check_writer(writer) if writer is not None else default_writer()
        self._hooks: list[Callable[[StoredRecord], None]] = []
        self._enrich: list[Callable[[AuditRecord], AuditRecord]] = []
        self._db: Database = open_database(target, SCHEMA, read_only=read_only)
        self._chain = ChainWriter(self._db, self._writer)
        self._group: GroupCommit[Prepared, Appended] = GroupCommit(self._chain.write)

    @property
    def writer(self) -> str:
        return self._writer

    @property
    def target(self) -> str:
        return self._db.target

    def anchor_with(self, checkpointer: Checkpointer) -> None:
        """Have ``checkpointer`` anchor this writer's chain: it is told of each record after its
        commit, and signs every ``every_records`` between two batches (:mod:`._append`)."""
        self._chain.anchor = checkpointer
        self._hooks.append(checkpointer.appended)

    def before_append(self, hook: Callable[[AuditRecord], AuditRecord]) -> None:
        """Pass each record through ``hook`` before it is appended (tracing adds the trace id
        to its context); the hook returns a valid record, never one holding a token."""
        self._enrich.append(hook)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction, committed when the block ends, holding the ``checkpoints``
        lock: checkpoint numbers are one chain across every writer of the database, so on
        PostgreSQL two writers must not read the same last checkpoint (on SQLite the write
        transaction holds the file). :class:`~orchestrator.errors.Unavailable` if it cannot be
        written."""
        try:
            with self._db.transaction(write=True) as tx:
                tx.lock("checkpoints")
                yield tx
        except Unavailable as exc:
            raise Unavailable("audit store cannot be written", reason=exc.reason) from exc

    def append(self, record: AuditRecord) -> StoredRecord:
        """Store one record in its own committed transaction; returns it with its chain fields.
        :class:`~orchestrator.errors.Unavailable` if it could not be stored (then it was not),
        :class:`~orchestrator.db.ConnectionLost` if whether it was stayed unknown.
        ``ValueError`` for a text with a NUL character, on every back end: PostgreSQL keeps
        none, and refused there it would fail the batch it shares with other callers."""
        for enrich in self._enrich:
            record = enrich(record)
        prepared = prepare(record.content())  # in the caller's thread, not the batch writer's
        if any(isinstance(value, str) and "\x00" in value for value in prepared.columns):
            raise ValueError("an audit record's text holds a NUL character, which no audit "
                             "store keeps")
        try:
            appended = self._group.submit(prepared)
        except Unavailable as exc:  # ConnectionLost (it may be stored) stays ConnectionLost
            kind = ConnectionLost if isinstance(exc, ConnectionLost) else Unavailable
            raise kind("audit store cannot be written", reason=exc.reason) from exc
        # ``record`` was validated when it was built, and the chain fields are this store's own:
        # validating it all again (the raw-token scan included) cost half of an append.
        values = {name: getattr(record, name) for name in CONTENT_FIELDS}
        stored = StoredRecord.model_construct(
            _fields_set=set(_STORED_FIELDS), **values, id=appended.row_id, writer=self._writer,
            seq=appended.seq, prev_hash=appended.prev_hash, hash=appended.hash,
        )
        for hook in self._hooks:
            hook(stored)
        return stored

    def check_writable(self) -> None:
        """:class:`~orchestrator.errors.Unavailable` unless an append could be written now: one
        write transaction (refused by a server that cannot write, such as a read-only standby)
        that takes this writer's lock and reads its head, storing nothing; one round trip. A
        service calls it before it acts, so that a trail it cannot write stops the action. It
        stores nothing, so a lost connection is simply tried again, once."""
        for attempt in range(1, CHECK_ATTEMPTS + 1):
            try:
                with self._db.transaction(write=True) as tx:
                    tx.lock(f"writer:{self._writer}")
                    tx.execute("SELECT last_seq FROM writers WHERE writer = ?", (self._writer,))
                return
            except ConnectionLost as exc:
                if attempt == CHECK_ATTEMPTS:
                    raise Unavailable("audit store cannot be written", reason=exc.reason) from exc
            except Unavailable as exc:
                raise Unavailable("audit store cannot be written", reason=exc.reason) from exc

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
        where = " AND ".join(_FILTERS[name] for name in used) or "TRUE"
        sql = f"SELECT {_COLUMNS} FROM records WHERE {where} ORDER BY time, id"
        params: list[Any] = list(used.values())
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(limit)
        with self._db.transaction(write=False) as tx:
            rows = tx.execute(sql, params).fetchall()
        return [_stored(row) for row in rows]

    def verify(self) -> VerifyReport:
        """Walk every writer's chain; see :mod:`orchestrator.audit._verify` for the kinds."""
        snapshot = self.snapshot()
        return verify_rows(snapshot.rows, snapshot.heads)

    def snapshot(self) -> Snapshot:
        """Every record's chain fields and content, the writer heads and the checkpoints, read in
        one read transaction (one snapshot: a checkpoint never covers a record the read missed,
        and appends committing meanwhile never look like a truncated chain)."""
        with self._db.transaction(write=False) as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM records ORDER BY id").fetchall()
            heads = tx.execute("SELECT writer, last_seq, last_hash FROM writers").fetchall()
            # none in a SQLite file from before checkpoints (opened read-only)
            checkpoints = (tx.execute(_SELECT_CHECKPOINTS).fetchall()
                           if self._db.has_table("checkpoints") else [])
        return Snapshot(
            [_chain_row(row) for row in rows],
            heads_of(heads),
            [CheckpointRow(*typed(row, _CHECKPOINT_TYPES, "checkpoint")) for row in checkpoints],
        )

    def missing_guards(self) -> list[str]:
        """The guard triggers the schema creates that the database lacks or has disabled."""
        return self._db.missing_triggers()

    def __repr__(self) -> str:
        return f"AuditStore({self._db.target!r}, writer={self._writer!r})"


@dataclass(frozen=True)
class Snapshot:
    """What :meth:`AuditStore.snapshot` read: all of it untrusted until verified."""

    rows: list[ChainRow]
    heads: dict[str, Head]
    checkpoints: list[CheckpointRow]


def _check_writer(writer: str) -> str:
    if not writer or len(writer) > 200 or contains_raw_jwt(writer):
        raise ValueError("writer must be a short non-empty name")
    return writer


def _content(row: tuple[Any, ...]) -> dict[str, Any]:
    """The content dict of a stored row; raises ValueError if a column does not hold its type
    (a BLOB, a REAL: a damaged row can hold any) or a JSON column does not decode."""
    values = dict(zip(CONTENT_FIELDS, row[len(_CHAIN_COLUMNS) :], strict=True))
    for name, value in values.items():
        if type(value) is not _COLUMN_TYPES[name] and (value is not None or name not in _NULLABLE):
            raise ValueError(f"audit record column {name} does not hold its type")
    for name in JSON_FIELDS:
        values[name] = json.loads(values[name])
    return values


_CHAIN_TYPES = (int, str, int, str, str)
_CHECKPOINT_TYPES = (int, str, int, str, str, str, str, str, str)
# A content column's type as stored (the JSON ones are text), and the columns that may be NULL.
_COLUMN_TYPES = {name: int if name == "status" else str for name in CONTENT_FIELDS}
_NULLABLE = frozenset(n for n, field in AuditRecord.model_fields.items() if field.default is None)


def _chain_row(row: tuple[Any, ...]) -> ChainRow:
    typed(row, _CHAIN_TYPES, "audit record")
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
        raise ValueError(f"audit record id {chain['id']} cannot be read; run `infrabot audit "
                         "verify`") from exc
