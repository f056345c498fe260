"""The run log's record of CI deliveries: each content key of a delivery (see
:mod:`orchestrator.ci._replay`) claimed once, and the run its claim was made for.

``deliveries`` holds the keys received in the last ``ttl`` seconds (the replay guard that
outlives a restart). ``delivery_claims`` links a key to the run id its receiver chose before
starting anything (and passes to the start) and says whether that run was marked running
(``started``, in the same write: :meth:`RunStore.mark_running`), the receiver answered
(``answered``), or neither (``starting``: the receiver may have died mid-start). A key without a link (claimed by an
older version) counts as answered. So a sender's redelivery of an event whose receiver died
mid-start can take the claim over (:meth:`DeliveryClaims.take_over_delivery`) instead of being
refused as a replay, whatever became of the run meanwhile (never created, still ``pending``, or
ended before it was marked running, by the run deadline, say): its first hop was never published.
A run marked running was started, and the redelivery stays refused, unless its first hop's
publication is still in doubt (:meth:`DeliveryClaims.take_over_started`: its hand-off journaled
``sending`` and never received; the start died, or hangs, between marking the run running and
publishing its first hop): then the redelivery renews that hand-off's generation, so whatever
the old start published is stale, ends the old run and starts a new one.

Every take-over is exclusive: a ``pending`` run is ended (``failed``) only by the one caller
whose conditional finish moved it (and the start that created it then finds it ended at
``mark_running`` and publishes nothing); an absent run is started under its claimed id, and the
run's primary key lets exactly one start create it; the claim of an ended run is moved to a new
run by one conditional update.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.db import Transaction
from orchestrator.runs._ends import ENDED, SUPERSEDED
from orchestrator.runs._model import Run, check_text
from orchestrator.runs._schema import format_time

ClaimState = Literal["starting", "started", "answered"]

def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:16]}"


class DeliveryClaim(BaseModel):
    """Who claimed a delivery key: the run id its receiver chose, and whether it answered."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    state: ClaimState


class DeliveryClaims:
    """The delivery methods of :class:`~orchestrator.runs.RunStore`."""

    _clock: Callable[[], datetime]

    def _write(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def get(self, run_id: str) -> Run | None:
        raise NotImplementedError

    def _end(self, run_id: str, status: str, reason: str, *, agent: str | None = None,
             if_pending: bool = False, cause: str = ENDED,
             first: Callable[[Transaction], bool] | None = None) -> bool:
        raise NotImplementedError

    def claim_delivery(self, delivery_id: str, *, ttl: int, run_id: str | None = None) -> bool:
        """Record a CI delivery key as received; False if it was received within the last
        ``ttl`` seconds (keys older than that are forgotten here, so the tables stay bounded).
        ``run_id``: the run the receiver will start for it, linked to it as ``starting`` in the
        same transaction (None: no link, the key counts as answered)."""
        check_text("delivery_id", delivery_id)
        now = self._clock()
        expired, received = format_time(now - timedelta(seconds=ttl)), format_time(now)
        with self._write() as tx:
            tx.execute("DELETE FROM deliveries WHERE received_at < ?", (expired,))
            tx.execute("DELETE FROM delivery_claims WHERE received_at < ?", (expired,))
            cursor = tx.execute("INSERT INTO deliveries (delivery_id, received_at) "
                                "VALUES (?, ?) ON CONFLICT DO NOTHING", (delivery_id, received))
            if run_id is not None:  # linked only if that INSERT was this claim's
                tx.execute(
                    "INSERT INTO delivery_claims (delivery_id, run_id, state, received_at) "
                    "SELECT delivery_id, ?, 'starting', received_at FROM deliveries "
                    "WHERE delivery_id = ? AND received_at = ? ON CONFLICT (delivery_id) DO "
                    "UPDATE SET run_id = excluded.run_id, state = excluded.state, "
                    "received_at = excluded.received_at", (run_id, delivery_id, received))
        return cursor.rowcount == 1

    def delivery_claim(self, delivery_id: str) -> DeliveryClaim | None:
        """The claim of a received key; None if it is not received or has no link."""
        with self._read() as tx:
            row = tx.execute("SELECT c.run_id, c.state FROM delivery_claims c JOIN deliveries d "
                             "ON d.delivery_id = c.delivery_id WHERE c.delivery_id = ?",
                             (delivery_id,)).fetchone()
        return None if row is None else DeliveryClaim(run_id=row[0], state=row[1])

    def answer_delivery(self, keys: Sequence[str], run_id: str) -> None:
        """The receiver answered the delivery claimed for ``run_id``: no take-over any more."""
        with self._write() as tx:
            tx.execute(f"UPDATE delivery_claims SET state = 'answered' WHERE run_id = ? "
                       f"AND delivery_id IN ({_marks(keys)})", (run_id, *keys))

    def release_delivery(self, delivery_id: str, run_id: str | None = None) -> None:
        """Forget a delivery key that started nothing (a transient failure), so the sender's
        redelivery of it is taken; with ``run_id``, only if its claim is still that run's."""
        with self._write() as tx:
            if run_id is None:
                tx.execute("DELETE FROM deliveries WHERE delivery_id = ?", (delivery_id,))
                tx.execute("DELETE FROM delivery_claims WHERE delivery_id = ?", (delivery_id,))
                return
            tx.execute("DELETE FROM deliveries WHERE delivery_id = ? AND NOT EXISTS (SELECT 1 "
                       "FROM delivery_claims WHERE delivery_id = ? AND run_id <> ?)",
                       (delivery_id, delivery_id, run_id))
            tx.execute("DELETE FROM delivery_claims WHERE delivery_id = ? AND run_id = ?",
                       (delivery_id, run_id))

    def take_over_delivery(self, keys: Sequence[str], orphan: str, run_id: str) -> str | None:
        """Take over the delivery whose claim names ``orphan``, a run never marked running (its
        claim still ``starting``): the run id to start it under, or None if another caller took
        it over first (or its start went on). ``orphan`` itself if that run was never created
        (its primary key makes one start create it); else ``run_id``, this call having ended
        ``orphan`` if it was still ``pending`` (the one caller whose conditional finish moved
        it), or moved the claim off an ``orphan`` that something else ended (the one caller
        whose conditional update did)."""
        run = self.get(orphan)
        if run is None:
            target = orphan
        elif run.status == "pending":
            # The claim moved and the run ended in one transaction, under the run's lock: a
            # caller that ends a run is the one that took its claim (never one that then finds
            # the claim taken by another, having ended a start that was alive).
            def move(tx: Transaction) -> bool:
                return _move(tx, keys, orphan, run_id) > 0

            if not self._end(orphan, "failed", "not started: its delivery was received again "
                             f"({run_id})", if_pending=True, first=move):
                return None
            return run_id
        elif run.terminal:
            target = run_id
        else:
            return None
        with self._write() as tx:
            moved = _move(tx, keys, orphan, target)
            _move(tx, keys, run_id, target)  # keys this delivery claimed itself
        if target != orphan and moved == 0:
            return None
        return target

    def take_over_started(self, keys: Sequence[str], orphan: str, run_id: str) -> str | None:
        """Take over the delivery whose claim names ``orphan``, a run marked running (its claim
        ``started``) whose first hop was never received: its hand-off journaled ``sending`` and
        nothing else of the run journaled (its start died, or hangs, between marking it running
        and publishing it). ``run_id`` (the run to start instead), or None: a hop of it claimed
        its hand-off, the delivery was answered, or another caller took it over first.

        One transaction under the run's lock (every journal write of the run holds it, as
        :meth:`mark_running` does): the claim moves to ``run_id`` (``starting``), the hand-off's
        generation is renewed, so a copy the old start published (or will) is stale and its
        later ``sent`` a no-op (docs/journal.md), and ``orphan``, if still running, ends
        ``failed`` (one ended meanwhile, by the run deadline say, stays as it ended)."""
        run = self.get(orphan)
        if run is None or not (run.status == "running" or run.terminal):
            return None

        status = run.status  # what it must still be, under the lock

        def supersede(tx: Transaction) -> bool:
            now = tx.execute("SELECT status FROM runs WHERE run_id = ?", (orphan,)).fetchone()
            if (now is None or now[0] != status
                    or tx.execute(_IN_DOUBT, (orphan, orphan)).fetchone() is None):
                return False
            moved = tx.execute(f"UPDATE delivery_claims SET run_id = ?, state = 'starting' "
                               f"WHERE state = 'started' AND run_id = ? AND delivery_id IN "
                               f"({_marks(keys)})", (run_id, orphan, *keys)).rowcount
            if moved == 0:  # answered meanwhile, or moved by another caller: nothing written
                return False
            tx.execute("UPDATE journal SET attempts = attempts + 1, updated_at = ? WHERE "
                       "run_id = ? AND step = -1 AND state = 'sending'",
                       (format_time(self._clock()), orphan))
            return True

        if status == "running":
            taken = self._end(orphan, "failed", f"superseded by run {run_id}: its delivery was "
                              "received again before its first hop was published",
                              cause=SUPERSEDED, first=supersede)
        else:
            with self._write() as tx:
                tx.lock(f"run:{orphan}")
                taken = supersede(tx)
        return run_id if taken else None


# A run's journal holds only hand-offs in doubt (``sending``, step -1): no hop of it claimed
# one, sent one on or journaled a step.
_IN_DOUBT = ("SELECT 1 FROM journal WHERE run_id = ? AND step = -1 AND state = 'sending' AND "
             "NOT EXISTS (SELECT 1 FROM journal WHERE run_id = ? AND (step <> -1 OR state <> "
             "'sending'))")


def _move(tx: Transaction, keys: Sequence[str], claimed: str, target: str) -> int:
    """Move the still ``starting`` claims of ``keys`` from run ``claimed`` to ``target``; how
    many moved."""
    return tx.execute(f"UPDATE delivery_claims SET run_id = ? WHERE state = 'starting' "
                      f"AND run_id = ? AND delivery_id IN ({_marks(keys)})",
                      (target, claimed, *keys)).rowcount


def mark_started(tx: Transaction, run_id: str) -> None:
    """Inside the write that marks ``run_id`` running: its delivery's claim is ``started``."""
    tx.execute("UPDATE delivery_claims SET state = 'started' WHERE run_id = ? "
               "AND state = 'starting'", (run_id,))


def _marks(keys: Sequence[str]) -> str:
    return ", ".join("?" * len(keys))
