"""The run log's queue of ended runs whose tokens are still to be revoked: the transaction that
records a run's terminal status also enqueues it (``run_ends``), with why (``CAUSES``; not a
static-token run, which has no token of its own), and the process that holds the revocation
registry takes the queue in order, revokes and records each run, then forgets it
(:mod:`orchestrator._run_end`).

A queue rather than a scan of ``runs`` by ``finished_at``: that time is the finishing host's
clock, taken before its commit, so a scan moving a cursor over it could pass a run whose commit
came late or whose host's clock lags. A queued run stays queued until it is forgotten: nothing
is lost while the registry or the revoking process is down, and a run is revoked again (a
no-op) at worst, never missed.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

from orchestrator.db import Database, Transaction
from orchestrator.runs._schema import parse_time

# Why a run is revoked, as its revocation's audit record says (request id ``<run>.<cause>``):
ENDED = "ended"  # it ended
SUPERSEDED = "superseded"  # a redelivery of its CI event took its delivery over once it ran
DEADLINE_EXCEEDED = "deadline_exceeded"  # the run deadline ended it (and revoked it first)
CAUSES = frozenset({ENDED, SUPERSEDED, DEADLINE_EXCEEDED})

# Enqueued in the ending transaction, only when that transaction ended the run (its finish
# time), and not for a static-token run: it has no token of its own to revoke.
_ENQUEUE = ("INSERT INTO run_ends (run_id, ended_at, cause) SELECT run_id, finished_at, ? "
            "FROM runs WHERE run_id = ? AND finished_at = ? AND mode <> 'static' "
            "ON CONFLICT (run_id) DO NOTHING")


class EndedRun(NamedTuple):
    run_id: str
    ended_at: datetime
    cause: str


def enqueue_end(tx: Transaction, run_id: str, finished_at: str, cause: str) -> None:
    """Queue ``run_id`` for revocation, for ``cause``, if ``tx`` ended it at ``finished_at``."""
    tx.execute(_ENQUEUE, (cause, run_id, finished_at))


class RunEnds:
    """The ended-run queue's methods of :class:`~orchestrator.runs.RunStore`."""

    _db: Database

    def _write(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def settled(self, run_id: str) -> bool:
        """False while ``run_id``'s end is queued, its tokens not yet revoked (a run log made
        before the queue has none)."""
        return self.queued_end(run_id) is None

    def ended(self, limit: int = 100) -> builtins.list[EndedRun]:
        """The first ``limit`` queued runs, in the order they ended."""
        with self._read() as tx:
            rows = tx.execute("SELECT run_id, ended_at, cause FROM run_ends "
                              "ORDER BY ended_at, run_id LIMIT ?", (limit,)).fetchall()
        return [_ended(row) for row in rows]

    def queued_end(self, run_id: str) -> EndedRun | None:
        """``run_id``'s entry in the queue, or None."""
        if not self._db.has_table("run_ends"):
            return None
        with self._read() as tx:
            row = tx.execute("SELECT run_id, ended_at, cause FROM run_ends WHERE run_id = ?",
                             (run_id,)).fetchone()
        return None if row is None else _ended(row)

    def forget_ended(self, run_ids: Sequence[str]) -> None:
        """Take ``run_ids`` off the queue (their revocation is done)."""
        if run_ids:
            marks = ", ".join("?" * len(run_ids))
            with self._write() as tx:
                tx.execute(f"DELETE FROM run_ends WHERE run_id IN ({marks})", tuple(run_ids))


def _ended(row: Sequence[Any]) -> EndedRun:
    """A queued run as read; a cause that is not one of ours (a row written by hand) reads as
    ``ended``, so nobody but this code chooses what a record's request id says."""
    return EndedRun(row[0], parse_time(row[1]), row[2] if row[2] in CAUSES else ENDED)
