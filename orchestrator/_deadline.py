"""The run deadline: a run still unfinished ``settings.run_deadline_seconds`` after it started is
revoked (by run, so every token of it is refused at the authorization server and every service)
and then ended ``failed`` with reason ``deadline_exceeded``.

A run is stranded when the work it queued is lost: a broker that keeps nothing on disk restarts
with hops still queued, or a retry cannot be published while it is down. The hand-off token was
in that message and is stored nowhere else (by design), so the run cannot be resumed; it must
not stay ``running`` for ever either. Revoking first makes the verdict true: any piece of the run
still alive somewhere is refused from then on. When the registry cannot be reached nothing is
finished (the run could still act); the next sweep tries again. Its end is queued like any
other (:mod:`orchestrator._run_end`), which finds it revoked and writes its record
(``<run>.deadline_exceeded``).

:func:`deadline_sweeper` runs :meth:`RunDeadline.sweep` on a background thread of the process
that serves the webhook receiver (``infrabot serve``, or the embedded system).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from orchestrator._log import get_logger
from orchestrator._periodic import periodic
from orchestrator.errors import Unavailable
from orchestrator.identity import RevocationStore
from orchestrator.runs import DEADLINE_EXCEEDED, RunStore


class RunDeadline:
    def __init__(self, runs: RunStore, revocation: RevocationStore, seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._runs = runs
        self._revocation = revocation
        self._seconds = seconds
        self._clock = clock

    @property
    def seconds(self) -> int:
        return self._seconds

    def sweep(self) -> list[str]:
        """End every overdue run; return the ids this call ended."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        ended = []
        for run_id in self._runs.unfinished_before(now - timedelta(seconds=self._seconds)):
            log = get_logger(run_id=run_id)
            try:
                self._revocation.revoke_run(run_id)
            except Unavailable:
                log.warning("run_deadline_revoke_failed")
                continue
            reason = f"{DEADLINE_EXCEEDED}: not finished within {self._seconds} s"
            # queued like any end, for its record (written by the ended-run hook at once in
            # this process, or by a later sweep), revoked already: the registry says so
            if not self._runs.finish(run_id, "failed", reason, cause=DEADLINE_EXCEEDED):
                continue  # it ended meanwhile (or another process ended it)
            log.warning("run_deadline_exceeded", seconds=self._seconds)
            ended.append(run_id)
        return ended


@contextmanager
def deadline_sweeper(deadline: RunDeadline, interval: float | None = None) -> Iterator[RunDeadline]:
    """Sweep every ``interval`` seconds (default: a tenth of the deadline, 0.5 s to 5 s) while
    the block runs; a sweep that fails is logged and retried at the next tick."""
    every = interval if interval is not None else min(5.0, max(0.5, deadline.seconds / 10))
    with periodic(deadline.sweep, every, name="infrabot-run-deadline",
                  failure_event="run_deadline_sweep_failed"):
        yield deadline
