"""Appending records to one writer's hash chain, a batch per transaction, in one round trip.

The writer's head (last seq, last hash) is kept in the process between appends, so a batch's
hashes are computed before its transaction starts, and the transaction is sent whole (one round
trip on PostgreSQL, ``COMMIT`` included): the writer's lock; the batch's records in one prepared
``INSERT`` run once per record (``executemany``), each storing its record only if the writer's
head is still the one the batch follows; the head moved one record at a time (one prepared
``UPDATE`` run per record, each under the condition that the head is that record's predecessor,
so the forward-only trigger sees single steps); and one read of the batch's rows by writer and
seq, which says what was stored (a record is stored if its seq holds its hash) and gives the row
ids. Under the lock nothing else moves this head, so either the whole batch finds the head it
follows (the head this process knew was right) or none of it does (another store that shares the
writer name appended meanwhile): then nothing was written, the head is read inside the next,
locked, transaction, and the batch is written after it. A writer name is unique per store unless
given, so that second transaction is the exception. On PostgreSQL a batch whose head and bound
the process knows is all of that in one statement, the schema's ``audit_append_batch``
(:mod:`orchestrator.audit._batch_sql`): the driver's work per statement was most of an append.

A store with a checkpointer (:class:`Anchor`) ends a batch at the record at which a record-count
checkpoint falls due, and has it signed before it writes the rest: so no commit, however many
threads append, leaves more than ``every_records`` of the writer's records unanchored (the bound
the verifier holds it to), whereas one signed after the fact, while later batches commit, would
let a verification in between see a longer tail. Where this process's own count falls
short (another store of its writer name, or an earlier process, extended and anchored the
chain), the writer's last checkpoint in the database, read under the writer's lock, sets the
bound. Each part of a batch has its own attempts, and a part that fails answers only its own
records: the ones already stored keep their answer.

A connection lost inside the transaction leaves its commit unknown. It is read back in a write
transaction that first takes the writer's lock, so a transaction still in flight on the lost
connection has ended (committed or rolled back) before the records are looked for: those found
with their hash at their seq are stored; the others are written again, once, on a fresh
connection. So a record is never stored twice, and one that raises was not stored (unless the
read-back itself failed: then it may be, as a ``ConnectionLost``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from orchestrator.audit._batch_sql import (
    FIRST_HEAD,
    FOUND,
    HEAD,
    INSERT_AFTER,
    INSERT_FIRST,
    MOVE_HEAD,
    append_batch,
)
from orchestrator.audit._chain import GENESIS_HASH, chain_hash
from orchestrator.audit._checkpoint import SELECT_WRITER_LAST
from orchestrator.audit._record import CONTENT_FIELDS, canonical_json
from orchestrator.audit._schema import JSON_FIELDS
from orchestrator.db import ConnectionLost, Database, Dialect, Transaction
from orchestrator.errors import Unavailable

APPEND_ATTEMPTS = 2
READ_BACK_ATTEMPTS = 3
# One encoder, built once (``json.dumps`` with an option builds one per call); the same text.
_COLUMN_JSON = json.JSONEncoder(ensure_ascii=False).encode
_JSON_COLUMN = tuple(name in JSON_FIELDS for name in CONTENT_FIELDS)


@dataclass(frozen=True)
class Appended:
    """Where a record went: its row id and its place in the chain."""

    row_id: int
    seq: int
    prev_hash: str
    hash: str


class Prepared(NamedTuple):
    """A record's content as the appending thread serialised it, before it waits for the batch's
    writer: its canonical JSON (what its hash covers) and its column values in the INSERT's
    order, JSON fields as JSON text."""

    record_json: str
    columns: tuple[Any, ...]


def prepare(content: dict[str, Any]) -> Prepared:
    """The content (:meth:`~orchestrator.audit.AuditRecord.content`), serialised once."""
    return Prepared(canonical_json(content), tuple(
        _COLUMN_JSON(content[name]) if is_json else content[name]
        for name, is_json in zip(CONTENT_FIELDS, _JSON_COLUMN, strict=True)))


class Anchor(Protocol):
    """What signs the record-count checkpoints of a chain
    (:class:`~orchestrator.audit.Checkpointer`)."""

    @property
    def every_records(self) -> int:
        """The bound: a checkpoint at least every this many records."""

    def due_at(self) -> int:
        """The seq at which the next checkpoint falls due, as far as this process knows."""

    def anchor(self, seq: int, digest: str) -> bool:
        """Sign a checkpoint of record ``seq``, committed with hash ``digest``; False if it
        could not (never raises)."""


_Answer = Appended | Exception | None  # where a record went, why not, or not tried yet


@dataclass(frozen=True)
class _Planned:
    seq: int
    prev_hash: str
    hash: str


class ChainWriter:
    """Appends batches of prepared record contents (:func:`prepare`) to ``writer``'s chain in
    ``db``; not thread-safe (the store's :class:`~orchestrator.audit._group.GroupCommit` calls
    it from one thread at a time)."""

    def __init__(self, db: Database, writer: str) -> None:
        self._db = db
        self._writer = writer
        self._writer_json = canonical_json(writer)
        self._head: tuple[int, str] | None = None  # None: read it inside the next transaction
        self.anchor: Anchor | None = None
        self._unsigned: tuple[int, str] | None = None  # a head the anchor failed to sign

    def write(self, contents: Sequence[Prepared]) -> list[Appended | Exception]:
        """Store every content, in order, chained; per content where it went, or the exception
        that kept it from being stored (a plain :class:`~orchestrator.errors.Unavailable`: it
        was not; ``ConnectionLost``: the read-back could not tell). Raises if every content
        shares one such answer; once a part of the batch is stored, only the rest is answered
        with the failure."""
        done: dict[int, Appended | Exception] = {}
        lost = 0
        while len(done) < len(contents):
            todo = [i for i in range(len(contents)) if i not in done]
            planned: list[_Planned] = []
            stored: list[_Answer]
            due = self.anchor.due_at() if self.anchor else None
            try:
                stored = [*self._send([contents[i] for i in todo], planned, due)]
            except ConnectionLost as exc:
                try:
                    stored = [*self._read_back(planned)] if planned else []
                except Exception as failed:  # noqa: BLE001 - the commit stays unknown
                    stored = _unknown(_as_lost(failed, exc), len(planned), len(todo), bool(done))
                # a part the read-back found stored leaves the next part its own attempts
                lost = 0 if any(isinstance(answer, Appended) for answer in stored) else lost + 1
                stored += [None] * (len(todo) - len(stored))
                if lost >= APPEND_ATTEMPTS:  # read back: not stored, or never sent
                    gone = Unavailable(exc.message, reason=exc.reason)
                    stored = [gone if appended is None else appended for appended in stored]
            except Exception as exc:  # noqa: BLE001 - answered per record once a part is stored
                stored = _failed(exc, bool(done), len(todo))
            else:
                lost = 0
            for index, appended in zip(todo, stored, strict=True):
                if appended is not None:
                    done[index] = appended
            self._anchor_if_due(due)
        return [done[i] for i in range(len(contents))]

    def _anchor_if_due(self, due: int | None) -> None:
        """Have the anchor sign the head if it reached ``due``; a head it failed to sign is
        tried again once the head has moved on (the next batch), not at every call."""
        head = self._head
        if self.anchor is None or due is None or head is None or head[0] < due \
                or head == self._unsigned:
            return
        self._unsigned = None if self.anchor.anchor(*head) else head

    def _send(self, contents: Sequence[Prepared], planned: list[_Planned],
              due: int | None) -> list[Appended | None]:
        """One transaction, ending at the record where the next checkpoint falls due; per
        content, where it was stored (None: not, the head had moved, or it comes after)."""
        writer, start = self._writer, self._head
        if self._db.dialect is Dialect.POSTGRESQL and start is not None and start[0] > 0 \
                and (due is None or due > start[0]):  # head and bound known: one statement
            self._plan_all(start, contents[:None if due is None else due - start[0]], planned)
            found = append_batch(self._db, writer, start, [
                (plan.seq, plan.prev_hash, plan.hash, content.columns)
                for plan, content in zip(planned, contents, strict=False)])
            return self._found(planned, found, len(contents))
        with self._db.transaction(write=True) as tx:
            tx.lock(f"writer:{writer}")
            start = start if start is not None else self._read_head(tx)
            end = self._room(tx, start, due) if due is not None else None  # None: all
            if end == 0:  # a checkpoint is overdue: signed (after this transaction) first
                self._head = start
                return [None] * len(contents)
            self._plan_all(start, contents[:end], planned)
            rows = [[writer, plan.seq, plan.prev_hash, plan.hash, *content.columns]
                    for plan, content in zip(planned, contents, strict=False)]
            moves = planned
            if start[0] == 0:
                tx.executemany(INSERT_FIRST, [[*row, writer] for row in rows])
                tx.execute(FIRST_HEAD, (writer, planned[0].seq, planned[0].hash))
                moves = planned[1:]
            else:
                tx.executemany(INSERT_AFTER, [[*row, writer, *start] for row in rows])
            if moves:
                tx.executemany(MOVE_HEAD, [(plan.seq, plan.hash, writer, plan.seq - 1,
                                             plan.prev_hash) for plan in moves])
            read = tx.execute(FOUND, (writer, planned[0].seq, planned[-1].seq))
        return self._found(planned, read.fetchall(), len(contents))

    def _found(self, planned: list[_Planned], found: list[Any],
               count: int) -> list[Appended | None]:
        """Per content of the batch (``count``), where it was stored by the transaction whose
        read-back is ``found``; the head moves to the last planned record if it was."""
        stored = _stored(planned, found)
        self._head = (planned[-1].seq, planned[-1].hash) if stored[-1] is not None else None
        return [*stored, *[None] * (count - len(stored))]

    def _plan_all(self, head: tuple[int, str], contents: Sequence[Prepared],
                  planned: list[_Planned]) -> None:
        """Each content's place after ``head``, its hash over the one before (into ``planned``)."""
        for content in contents:
            seq, prev_hash = head[0] + 1, head[1]
            planned.append(_Planned(seq, prev_hash, chain_hash(prev_hash, content.record_json,
                                                               self._writer_json, seq)))
            head = (seq, planned[-1].hash)

    def _room(self, tx: Transaction, start: tuple[int, str], due: int) -> int | None:
        """How many records may follow the head ``start`` in this transaction: up to ``due``.
        A ``due`` at or behind the head is this process's own count falling short (another
        store of this writer name, or an earlier process, extended the chain): then the
        writer's last checkpoint in the database says, read under the writer's lock, and 0
        when a checkpoint is overdue there (it is signed first). None: no bound (a head this
        process failed to sign is written past: while signing fails, batches are not cut
        short)."""
        if due > start[0]:
            return due - start[0]
        if self.anchor is None or start == self._unsigned:
            return None
        signed = tx.execute(SELECT_WRITER_LAST, (self._writer,)).fetchone()
        return max(0, (signed[0] if signed else 0) + self.anchor.every_records - start[0])

    def _read_head(self, tx: Transaction) -> tuple[int, str]:
        row = tx.execute(HEAD, (self._writer,)).fetchone()  # waits: the hashes need it
        return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

    def _read_back(self, planned: list[_Planned]) -> list[Appended | None]:
        """Which planned records a transaction whose connection was lost stored, read under
        the writer's lock (a write transaction: READ COMMITTED, so it sees what was committed
        while it waited for the lock); the head is read again too."""
        for attempt in range(1, READ_BACK_ATTEMPTS + 1):
            try:
                with self._db.transaction(write=True) as tx:
                    tx.lock(f"writer:{self._writer}")
                    head = tx.execute(HEAD, (self._writer,))
                    found = tx.execute(FOUND, (self._writer, planned[0].seq, planned[-1].seq))
                break
            except Unavailable as exc:  # lost again (tried again), or no connection at all
                if attempt == READ_BACK_ATTEMPTS or not isinstance(exc, ConnectionLost):
                    # the commit is still unknown: said so, whatever kept it from being read
                    raise ConnectionLost(exc.message, reason=exc.reason) from exc
        row = head.fetchone()
        self._head = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
        return _stored(planned, found.fetchall())


def _as_lost(failed: Exception, lost: ConnectionLost) -> ConnectionLost:
    """What kept a read-back of the ``lost`` transaction from telling, as a ``ConnectionLost``
    (the commit stays unknown, whatever the reason: the store closed meanwhile, say)."""
    if isinstance(failed, ConnectionLost):
        return failed
    unknown = ConnectionLost(lost.message, reason=lost.reason)
    unknown.__cause__ = failed
    return unknown


def _unknown(exc: ConnectionLost, sent: int, count: int, some_stored: bool) -> list[_Answer]:
    """A lost transaction the read-back could not account for: its ``sent`` records may be
    stored; the rest of the ``count`` were never sent (not stored). Raised for the whole batch
    when it is every record of the batch."""
    gone = Unavailable(exc.message, reason=exc.reason)
    return _failed(exc, some_stored or sent < count, sent) + [gone] * (count - sent)


def _failed(exc: Exception, some_stored: bool, count: int) -> list[_Answer]:
    """A part of a batch failed: raised for the whole batch if none of it is stored yet, else
    the answer of each of the ``count`` records not yet stored."""
    if not some_stored:
        raise exc
    answers: list[_Answer] = [exc] * count
    return answers


def _stored(planned: list[_Planned], found: list[Any]) -> list[Appended | None]:
    """Per planned record, where it is if ``found`` (rows of ``FOUND``) holds its hash at its
    seq, else None."""
    ids = {(seq, digest): row_id for seq, digest, row_id in found}
    return [None if (p.seq, p.hash) not in ids else
            Appended(int(ids[p.seq, p.hash]), p.seq, p.prev_hash, p.hash) for p in planned]
