"""A run's tokens die with it: every run that ends is revoked by run id at the revocation
registry, so no token of it (the root, any hop's, any prefetched for a step that never ran) is
accepted again at the authorization server or at any service, where it would otherwise live
until it expires (``token_ttl_seconds``, ``root_token_ttl_seconds``: up to 15 minutes).

The run's ending transaction queues it (:mod:`orchestrator.runs._ends`), on whichever host
ended it; the process that serves the authorization server, the one that holds the registry,
takes the queue every second (:func:`ended_run_revoker`), and a run that ended in that process
at once, in the thread that ended it (:meth:`EndedRuns.run_ended`, so the record comes before
the checkpoint that anchors the run's end). Each run is revoked until its last token has
expired, recorded (``revoke`` of ``run_id:<run>``, ``run_revoked``, request id
``<run>.<cause>``: ``ended``; ``superseded`` for a run a redelivery took over;
``deadline_exceeded`` for one the run deadline revoked and ended:
:mod:`orchestrator._run_revocation`) unless the trail has that record already, and taken off
the queue once it is on record. One sweep at a time in a process (a lock the hook waits for,
briefly). When the registry or the audit trail cannot be reached, the sweep stops there and
what is not done stays queued for the next; a process that stops between a revocation and its
record revokes the run again at its next sweep, a no-op, and records it then. A revocation
already in place (the run deadline's, made before it ended the run; a person's) is extended,
never shortened, and the run's end recorded unless the trail has it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestrator._log import get_logger
from orchestrator._periodic import periodic
from orchestrator._run_revocation import RunRevocation
from orchestrator.audit import AuditStore
from orchestrator.errors import Unavailable
from orchestrator.identity import RevocationStore
from orchestrator.runs import EndedRun, RunStore
from orchestrator.tracing import untraced

SWEEP_SECONDS = 1.0
# How long the thread that ended a run waits for a sweep under way before leaving its run to
# the next (a sweep stops at its first fault, so it holds the lock about as long as one).
HOOK_WAIT_SECONDS = 2.0


class EndedRuns:
    """Revokes the runs the run log has queued as ended. ``token_seconds``: the longest any
    token lives (``root_token_ttl_seconds``): a run's last token expires within it of now."""

    def __init__(self, runs: RunStore, revocation: RevocationStore, audit: AuditStore | None,
                 token_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._runs = runs
        self._revocation = RunRevocation(revocation, runs, audit, clock)
        self._token_seconds = token_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def sweep(self) -> list[str]:
        """Revoke every queued run; return the ids this call revoked (not those revoked
        before)."""
        with self._lock:
            return self._settle(self._runs.ended())

    def run_ended(self, run_id: str) -> None:
        """The hook of a run that ended in this process, in the thread that ended it, after
        its commit: that run is settled now rather than at the next tick. A sweep under way
        is waited for ``HOOK_WAIT_SECONDS`` at most (it stops at the first registry or audit
        store that does not answer): the tick settles the run then. It never raises: a failure
        is logged and left to the tick."""
        if not self._lock.acquire(timeout=HOOK_WAIT_SECONDS):
            get_logger(run_id=run_id).warning("ended_run_left_to_the_sweep")
            return
        try:
            with untraced():  # not the hop's work: its span is not annotated
                queued = self._runs.queued_end(run_id)
                if queued is not None:
                    self._settle([queued])
        except Exception:  # noqa: BLE001 - the run has ended; its caller must not fail here
            get_logger(run_id=run_id).exception("ended_run_sweep_failed")
        finally:
            self._lock.release()

    def _settle(self, queued: list[EndedRun]) -> list[str]:
        done: list[str] = []
        revoked: list[str] = []
        for ended in queued:
            until = int(self._clock()) + self._token_seconds
            try:
                new = self._revocation.revoke(ended.run_id, expires_at=until)
            except Unavailable:
                get_logger(run_id=ended.run_id).warning("ended_run_revoke_failed")
                break  # this one and the rest wait for the next sweep
            if new:
                revoked.append(ended.run_id)
            if ((new or not self._revocation.recorded(ended.run_id, ended.cause))
                    and not self._revocation.record(ended.run_id, ended.cause)):
                break  # revoked, not on record: queued still, recorded at a later sweep
            done.append(ended.run_id)
        self._runs.forget_ended(done)
        return revoked


@contextmanager
def ended_run_revoker(ended: EndedRuns,
                      interval: float = SWEEP_SECONDS) -> Iterator[EndedRuns]:
    """Sweep every ``interval`` seconds while the block runs; a sweep that fails (the run log
    down) is logged and retried at the next tick."""
    with periodic(ended.sweep, interval, name="infrabot-ended-runs",
                  failure_event="ended_run_sweep_failed"):
        yield ended
