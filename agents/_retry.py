"""How a hop's task is retried: exponential backoff with jitter, capped, a bounded number of
times; a hop waiting for another's part of a fan-out, until its run's deadline.

A transient fault (a service, the auth server or the run log unreachable, a 503) is retried 7
times, 12-24 s in all: longer than a restart of serve (about 3 s) or of PostgreSQL, so a hop in
flight rides one out. The longest countdown (8 s) plus the hop's time limit stays under the
Redis broker's visibility timeout, which a retry's countdown spends (settings check it).

Two waits are no fault of a dependency: a join delivered while a branch still runs
(``branches_unfinished``: not expected, as the join goes out only once the run log shows every
branch ended, but the join's hop checks again), and a branch's first hop whose fork has not yet
recorded its fan-out published (``fan_out_in_doubt``: the fork may have died between two
publishes; its message comes back, on Redis only after the visibility timeout, and publishes the
fan-out again). Each waits, at most 8 s between looks, until what it waits for happens or the
run's deadline (``run_deadline_seconds`` from its start) passes, and only then ends the run
failed. Waits and faults are counted apart (the message carries ``waited``, its retries that
were waits): a branch that waited for its fork, however long, still gets a fault's 7 retries,
from the shortest backoff, for a fault after it.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import Reject

from agents._fan_out import BRANCHES_UNFINISHED, FAN_OUT_IN_DOUBT
from agents._hop import HopOutcome
from agents._runtime import AgentRuntime
from orchestrator.config import RETRY_COUNTDOWN_CAP
from orchestrator.errors import TransientError
from orchestrator.runs import Retrying

MAX_RETRIES = 7


def backoff(retries: int) -> float:
    """Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s ... capped at 8 s, each drawn from
    half to all of that."""
    return float(min(RETRY_COUNTDOWN_CAP, 0.25 * 2 ** min(retries, 10)) *
                 random.uniform(0.5, 1.0))


def retry_or_fail(task: Task, rt: AgentRuntime, log: Any, agent: str, run_id: str,
                  reason: str, waited: int = 0) -> HopOutcome:
    """Raise Celery's Retry with the next backoff, or, the retries spent, the failed outcome.
    ``waited``: how many of the hop's retries so far were waits (:data:`WAITS`); a wait and a
    fault each count, and back off, by their own kind only, so a branch that waited for its fork
    still rides out a fault after it with a fault's full retries."""
    attempt = task.request.retries + 1
    waiting = reason in WAITS
    spent = waited if waiting else task.request.retries - waited  # of this kind, so far
    if spent >= MAX_RETRIES and not (waiting and _may_wait(rt, run_id)):
        return HopOutcome("failed", f"{agent}: {reason} after {attempt} attempts")
    delay = backoff(spent)
    try:
        rt.runs.add_event(run_id, agent, Retrying(reason=reason, attempt=attempt,
                                                  in_seconds=round(delay, 2)))
    except TransientError:  # the run log itself is away: the retry matters, not its display
        log.warning("retry_unrecorded", reason=reason, attempt=attempt)
    log.info("hop_retrying", reason=reason, attempt=attempt)
    try:
        waits = waited + 1 if waiting else waited
        raise task.retry(kwargs={**(task.request.kwargs or {}), "waited": waits},
                         countdown=delay, max_retries=max(MAX_RETRIES, attempt)) from None
    except Reject as exc:
        # Celery rejects a hop whose retry it could not publish, without requeueing it: with
        # the broker back an instant later that reject would drop the hop. Put it back.
        raise Reject(exc.reason, requeue=True) from None


WAITS = frozenset({BRANCHES_UNFINISHED, FAN_OUT_IN_DOUBT})


def _may_wait(rt: AgentRuntime, run_id: str) -> bool:
    """Whether a hop waiting (:data:`WAITS`) may look again: its run's deadline has not passed
    (a run log that cannot be read says no: the ordinary limit holds)."""
    try:
        run = rt.runs.get(run_id)
    except TransientError:
        return False
    age = datetime.now(UTC) - run.created_at if run is not None else None
    return age is not None and age.total_seconds() < rt.settings.run_deadline_seconds
