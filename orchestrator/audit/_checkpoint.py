"""Signed checkpoints: the audit key vouching for a writer's head, the way CloudTrail's digest
files vouch for its log files.

A checkpoint is a compact JWS (``typ`` :data:`CHECKPOINT_TYP`) signed with the audit key of the
writer's state directory (:mod:`orchestrator.audit._keys`, never in the database). Its payload::

    {"number": n, "writer": w, "seq": s, "head_hash": h, "time": t, "prev": p,
     "reason": r, "every_records": N}

says "record ``s`` of writer ``w`` had hash ``h``"; since every record's hash covers its
predecessor's, that vouches for records 1..s of ``w``. ``number`` counts every checkpoint of the
database (all writers, one chain) and ``prev`` is the SHA-256 of the previous checkpoint's payload
bytes (64 zeros for the first), so a deleted or reordered checkpoint breaks the chain.
``every_records`` is the writer's policy: the verifier flags a writer with more records after
its last checkpoint than that as missing checkpoints.

When a writer signs (:class:`Checkpointer`): every ``N`` records of its chain (the store's batch
writer ends a batch at that record and signs before it writes the next, so however many threads
append, no commit leaves more than ``N`` records unanchored), every ``T`` seconds while records
it appended are not yet covered (:func:`checkpoint_ticker`), when a run ends in its process
(:meth:`Checkpointer.run_ended`), and when it shuts down cleanly. Each checkpoint it signs, once
committed, also becomes the anchor beside the audit key (:mod:`._anchorfile`), the copy outside
the database that ``audit verify`` holds the database to. The SQL is plain (``?`` placeholders,
no SQLite functions), so it ports to another database by changing the placeholder.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from orchestrator._log import get_logger
from orchestrator._periodic import periodic
from orchestrator.audit._anchorfile import write_anchor
from orchestrator.audit._chain import GENESIS_HASH
from orchestrator.audit._record import StoredRecord, format_time
from orchestrator.errors import TransientError
from orchestrator.identity import JWS_SEGMENT as SEGMENT
from orchestrator.identity import SigningKey
from orchestrator.identity import sign_jws as sign

CHECKPOINT_TYP = "infrabot-audit-checkpoint+jws"
Reason = Literal["records", "interval", "run_end", "shutdown", "requested"]

COLUMNS = ("number", "writer", "seq", "head_hash", "time", "prev", "hash", "kid", "jws")
SELECT_ALL = f"SELECT {', '.join(COLUMNS)} FROM checkpoints ORDER BY number"
SELECT_LAST = "SELECT number, hash FROM checkpoints ORDER BY number DESC LIMIT 1"
SELECT_WRITER_LAST = ("SELECT seq FROM checkpoints WHERE writer = ? "
                      "ORDER BY number DESC LIMIT 1")
INSERT = (f"INSERT INTO checkpoints ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(COLUMNS))})")


@dataclass(frozen=True)
class CheckpointRow:
    """A stored checkpoint as the database holds it; only :attr:`jws` is trusted, once its
    signature has been checked."""

    number: int
    writer: str
    seq: int
    head_hash: str
    time: str
    prev: str
    hash: str
    kid: str
    jws: str


class CheckpointPayload(BaseModel):
    """What a checkpoint signs."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    number: int = Field(ge=1)
    writer: str = Field(min_length=1, max_length=200)
    seq: int = Field(ge=1)
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    time: str = Field(max_length=40)
    prev: str = Field(pattern=r"^[0-9a-f]{64}$")
    reason: str = Field(max_length=32)
    every_records: int = Field(ge=1)
    every_seconds: float | None = Field(default=None, gt=0)  # absent in older checkpoints


def payload_hash(payload: bytes) -> str:
    """What the next checkpoint's ``prev`` names: SHA-256 of the signed payload bytes."""
    return hashlib.sha256(payload).hexdigest()


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...


class CheckpointDatabase(Protocol):
    """What a checkpointer needs of its store (:class:`~orchestrator.audit.AuditStore`): its
    writer name and one write transaction at a time."""

    @property
    def writer(self) -> str: ...

    def transaction(self) -> AbstractContextManager[Connection]: ...


class CheckpointKeys(Protocol):
    """The audit key a checkpointer signs with (:class:`~orchestrator.audit.AuditKeys`)."""

    def current(self) -> SigningKey: ...


@dataclass
class _Head:
    seq: int = 0
    hash: str = GENESIS_HASH
    first_unanchored: float | None = None


class Checkpointer:
    """Signs checkpoints of one store's writer with the state directory's audit key; attach it
    with :meth:`~orchestrator.audit.AuditStore.anchor_with`. ``anchor_dir`` is where each
    checkpoint it signs becomes the anchor (:mod:`._anchorfile`): the audit key's directory,
    ``<state_dir>/keys/audit``; None keeps no anchor, which only a caller that means to do
    without one says.

    Thread-safe. :meth:`appended` follows the records the store commits; :meth:`due_at` and
    :meth:`anchor` are the store's batch writer's (every ``every_records``); :meth:`checkpoint`
    signs one now. A checkpoint that cannot be written is logged and tried again at the next
    occasion (the next batch, tick or run end); it never fails the append that triggered it.
    """

    def __init__(self, store: CheckpointDatabase, keys: CheckpointKeys, *,
                 anchor_dir: Path | None, every_records: int, every_seconds: float,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._keys = keys
        self._every_records = every_records
        self._every_seconds = every_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._head = _Head()
        self._signed_seq = 0
        self._anchor_dir = anchor_dir

    @property
    def every_seconds(self) -> float:
        return self._every_seconds

    @property
    def every_records(self) -> int:
        return self._every_records

    def appended(self, record: StoredRecord) -> None:
        """Called after each committed append of this writer."""
        with self._lock:
            head = self._head
            if record.seq > head.seq:
                head.seq, head.hash = record.seq, record.hash
            if head.first_unanchored is None and record.seq > self._signed_seq:
                head.first_unanchored = self._clock()

    def due_at(self) -> int:
        """The ``seq`` of this writer's chain at which the next record-count checkpoint falls
        due: ``every_records`` after the last one this instance signed."""
        with self._lock:
            return self._signed_seq + self._every_records

    def anchor(self, seq: int, digest: str) -> bool:
        """The record-count checkpoint of record ``seq`` (hash ``digest``), committed by the
        store's batch writer; False if it could not be signed (logged; never raises)."""
        return self._try("records", head=_Head(seq, digest))

    def tick(self) -> None:
        """Sign if a record appended here has waited ``every_seconds`` for a checkpoint."""
        with self._lock:
            first = self._head.first_unanchored
        if first is not None and self._clock() - first >= self._every_seconds:
            self._try("interval")

    def run_ended(self, run_id: str) -> None:
        """A run ended in this process: anchor what its records led to."""
        self._try("run_end", run_id=run_id)

    def close(self) -> None:
        """The clean-shutdown checkpoint."""
        self._try("shutdown")

    def checkpoint(self, reason: Reason) -> CheckpointRow | None:
        """Sign and store a checkpoint of this writer's head now; None if there is nothing new
        to anchor. Raises what the store raises when it cannot be written."""
        return self._checkpoint(reason, None)

    def _checkpoint(self, reason: Reason, head: _Head | None) -> CheckpointRow | None:
        with self._lock:
            head = head or _Head(self._head.seq, self._head.hash)
            if head.seq == 0 or head.seq <= self._signed_seq:
                if self._head.seq <= self._signed_seq:
                    self._head.first_unanchored = None
                return None
            row = self._write(head, reason)
            # None: another instance of this writer name anchored this head already
            self._signed_seq = head.seq
            if self._head.seq <= head.seq:  # else records after it wait since first_unanchored
                self._head.first_unanchored = None
            return row

    def _write(self, head: _Head, reason: Reason) -> CheckpointRow | None:
        key = self._keys.current()
        now = format_time(datetime.fromtimestamp(self._clock(), UTC))
        writer = self._store.writer
        with self._store.transaction() as conn:
            signed = conn.execute(SELECT_WRITER_LAST, (writer,)).fetchone()
            if signed is not None and signed[0] >= head.seq:
                return None  # another instance of this writer name anchored further already
            last = conn.execute(SELECT_LAST).fetchone()
            number, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            payload = CheckpointPayload(
                number=number, writer=writer, seq=head.seq, head_hash=head.hash, time=now,
                prev=prev, reason=reason, every_records=self._every_records,
                every_seconds=self._every_seconds)
            jws = sign(payload.model_dump(), key, {"typ": CHECKPOINT_TYP, "kid": key.kid})
            digest = payload_hash(payload_of(jws))
            row = CheckpointRow(number, writer, head.seq, head.hash, now, prev, digest, key.kid,
                                jws)
            conn.execute(INSERT, [getattr(row, name) for name in COLUMNS])
        self._keep_anchor(row)  # committed: the anchor never names a checkpoint the database lacks
        return row

    def _keep_anchor(self, row: CheckpointRow) -> None:
        """Make ``row`` the anchor outside the database; a failure is logged, never raised."""
        if self._anchor_dir is None:
            return
        try:
            moved = write_anchor(self._anchor_dir, row.jws, row.number)
        except OSError as exc:
            get_logger().warning("audit_anchor_failed", number=row.number,
                                 error=type(exc).__name__)
            return
        if not moved:  # the database's checkpoints are behind the anchor: replaced, restored?
            get_logger().warning("audit_anchor_ahead_of_database", number=row.number)

    def _try(self, reason: Reason, head: _Head | None = None, **context: Any) -> bool:
        try:
            self._checkpoint(reason, head)
        except Exception as exc:  # noqa: BLE001 - the record is committed: never fail its append
            kind = "transient" if isinstance(exc, TransientError) else type(exc).__name__
            get_logger(**context).warning("audit_checkpoint_failed", reason=reason, error=kind)
            return False
        return True


def payload_of(jws: str) -> bytes:
    """The payload bytes of a compact JWS (undecodable: ``ValueError``)."""
    parts = jws.split(".")
    if len(parts) != 3 or not SEGMENT.fullmatch(parts[1]):
        raise ValueError("not a compact JWS")
    return base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))


@contextmanager
def checkpoint_ticker(checkpointer: Checkpointer, interval: float | None = None
                      ) -> Iterator[Checkpointer]:
    """Call :meth:`Checkpointer.tick` every ``interval`` seconds (default a quarter of the
    checkpoint period, 0.2 s to 5 s) while the block runs. The shutdown checkpoint is the
    owner's (:meth:`Checkpointer.close`), once nothing appends any more."""
    every = interval if interval is not None else min(
        5.0, max(0.2, checkpointer.every_seconds / 4))
    with periodic(checkpointer.tick, every, name="infrabot-audit-checkpoint",
                  failure_event="audit_checkpoint_tick_failed"):
        yield checkpointer
