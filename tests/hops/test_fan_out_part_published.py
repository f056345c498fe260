"""A fork whose publishing stopped between its branches' messages (the broker lost, the worker
killed or out of time after the first) publishes the whole fan-out again, and the run ends with
every step done once. The branch it had published waits for its fork: it claims its hand-off
only once the fork has recorded the whole fan-out sent (docs/graphs.md). Until 2026-12-07 it
claimed at once, the fork performed again then published nothing, and the branch never
published never started (the run ended at its deadline).

The system runs embedded without its worker (see test_hop_resume): each task is performed here
as the worker performs it, from the message really queued on the in-memory broker.
"""

from __future__ import annotations

import collections
from datetime import datetime, timedelta, tzinfo
from typing import Any

import pytest
from celery.exceptions import Retry
from e2e._harness import events_of
from kombu.exceptions import OperationalError

import agents._fan_out
import agents._retry
import agents.tasks
from agents.tasks import MAX_RETRIES, task_name
from hops.test_hop_resume import counts, queued, started, system, take_message
from hops.test_hop_task_faults import as_worker, ended, raising
from infrabot.system import System
from orchestrator.errors import Unavailable
from orchestrator.runs import HopJournal

__all__ = ["system"]  # the fixture

INFRABOT, ARGOCD = "agent:infrabot", "agent:argocd"
SCANNER, CLEANUP = "agent:scanner", "agent:cleanup"


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A branch's inline wait for its fork: a few looks, not a second of them."""
    monkeypatch.setattr(agents._fan_out, "CLAIM_WAIT_SECONDS", 0.01)


def broker_lost_after_first_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fork's second publish fails (the broker lost between its two messages)."""
    enqueue = agents.tasks.enqueue
    published: list[str] = []

    def flaky(app: Any, agent: str, *args: Any, **kwargs: Any) -> None:
        if published and agent == SCANNER:
            monkeypatch.setattr(agents.tasks, "enqueue", enqueue)  # back for the retry
            raise OperationalError("connection lost")
        published.append(agent)
        enqueue(app, agent, *args, **kwargs)

    monkeypatch.setattr(agents.tasks, "enqueue", flaky)


def past_the_deadline(system: System) -> type[datetime]:
    """``datetime`` as the retry policy reads it, once the run's deadline has passed."""
    deadline = timedelta(seconds=system.runtime.settings.run_deadline_seconds + 1)

    class Later(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Later:
            return cls.fromtimestamp((datetime.now(tz) + deadline).timestamp(), tz)

    return Later


def test_a_fork_stopped_between_two_publishes_publishes_its_fan_out_again_whole(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    args = started(system)
    run_id = args[0]
    journal = HopJournal(system.runtime.runs)
    broker_lost_after_first_publish(monkeypatch)
    with pytest.raises(Retry):  # the fork's follow-up failed: retried
        as_worker(system, INFRABOT, args)
    assert (queued(system, "argocd"), queued(system, "scanner")) == (1, 0)
    first, first_join = take_message(system, "argocd")

    # ArgoCD's copy, taken before the fork is performed again: it waits for its fork, a retry
    with pytest.raises(Retry):
        as_worker(system, ARGOCD, first, first_join)
    [waiting] = events_of(ended(system, run_id), "retrying", ARGOCD)
    assert waiting.reason == "fan_out_in_doubt"
    assert [(d.state, d.attempts) if d else None for d in
            (journal.delivery(run_id, ARGOCD), journal.delivery(run_id, SCANNER))] == \
        [("sending", 1), ("sending", 1)]
    assert events_of(ended(system, run_id), "exchanged", ARGOCD) == []  # nothing done

    # The fork performed again (its retry, the same message) publishes the whole fan-out
    # again, under generation 2
    assert as_worker(system, INFRABOT, args)["status"] == "forked"
    assert system.runtime.runs.hop_done(run_id, INFRABOT)
    argocd, argocd_join = take_message(system, "argocd")
    scanner, scanner_join = take_message(system, "scanner")
    assert (first[5], argocd[5], scanner[5]) == (1, 2, 2)
    assert argocd_join == scanner_join != first_join  # a new join hand-off, naming both

    # ArgoCD's first copy (its retry) is stale; the new copies run; the join goes out once
    assert as_worker(system, ARGOCD, first, first_join)["status"] == "duplicate"
    assert as_worker(system, ARGOCD, argocd, argocd_join)["status"] == "branch_done"
    assert queued(system, "cleanup") == 0
    assert as_worker(system, SCANNER, scanner, scanner_join)["status"] == "branch_done"
    join, _ = take_message(system, "cleanup")
    assert as_worker(system, CLEANUP, join)["status"] == "succeeded"
    run = ended(system, run_id)
    assert run.status == "succeeded", run.reason
    agents_ = {INFRABOT, ARGOCD, SCANNER, CLEANUP}
    calls = collections.Counter((who, action) for who, action, _ in
                                counts(system, run_id).elements()
                                if who in agents_ and action != "token_exchange")
    assert set(calls.values()) == {1}  # every call once
    assert {who for who, _ in calls} == agents_


def test_a_branch_waits_for_its_fork_past_the_retry_limit(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its fork's message comes back only after the Redis broker's visibility timeout (120 s by
    default): longer than the 7 retries of a transient fault, so it waits like a join."""
    args = started(system)
    broker_lost_after_first_publish(monkeypatch)
    with pytest.raises(Retry):
        as_worker(system, INFRABOT, args)
    first, first_join = take_message(system, "argocd")
    with pytest.raises(Retry):
        as_worker(system, ARGOCD, first, {**first_join, "waited": MAX_RETRIES + 5},
                  retries=MAX_RETRIES + 5)
    [waiting] = events_of(ended(system, args[0]), "retrying", ARGOCD)
    assert (waiting.reason, waiting.attempt) == ("fan_out_in_doubt", MAX_RETRIES + 6)
    assert waiting.in_seconds <= 8


def test_a_branch_still_waiting_for_its_fork_at_the_deadline_ends_failed(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    args = started(system)
    broker_lost_after_first_publish(monkeypatch)
    with pytest.raises(Retry):
        as_worker(system, INFRABOT, args)
    first, first_join = take_message(system, "argocd")
    monkeypatch.setattr(agents._retry, "datetime", past_the_deadline(system))
    summary = as_worker(system, ARGOCD, first, {**first_join, "waited": MAX_RETRIES},
                        retries=MAX_RETRIES)
    assert summary["status"] == "failed"
    [branch] = events_of(ended(system, args[0]), "branch_ended", ARGOCD)
    assert (branch.status, branch.reason) == \
        ("failed", f"agent:argocd: fan_out_in_doubt after {MAX_RETRIES + 1} attempts")
    assert events_of(ended(system, args[0]), "exchanged", ARGOCD) == []


def test_a_branch_that_waited_for_its_fork_still_rides_out_a_fault(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its waits do not spend a fault's retries: its message says how many of its retries were
    waits (``waited``), and a fault after them is retried from a fault's first backoff."""
    args = started(system)
    assert as_worker(system, INFRABOT, args)["status"] == "forked"
    argocd, argocd_join = take_message(system, "argocd")
    away = Unavailable("the run log is away", reason="run_log_unavailable")
    monkeypatch.setattr(agents.tasks, "perform_hop", raising(away))
    waited = MAX_RETRIES + 3
    with pytest.raises(Retry):
        as_worker(system, ARGOCD, argocd, {**argocd_join, "waited": waited}, retries=waited)
    [retrying] = events_of(ended(system, args[0]), "retrying", ARGOCD)
    assert (retrying.reason, retrying.attempt) == ("run_log_unavailable", waited + 1)
    assert retrying.in_seconds <= 0.25  # a fault's first backoff
    # A fault's own retries spent (7 faults after the waits): the branch ends failed
    summary = as_worker(system, ARGOCD, argocd, {**argocd_join, "waited": waited},
                        retries=waited + MAX_RETRIES)
    assert summary["status"] == "failed"
    [branch] = events_of(ended(system, args[0]), "branch_ended", ARGOCD)
    assert branch.reason == \
        f"agent:argocd: run_log_unavailable after {waited + MAX_RETRIES + 1} attempts"


def retried(system: System, agent: str, message: list[Any], kwargs: dict[str, Any],
            retries: int) -> Any:
    """The retry ``agent``'s task publishes (Celery's signature of it), the task performed as
    the worker performs a message carrying ``kwargs`` after ``retries`` retries."""
    task = system.celery.tasks[task_name(system.celery, agent)]
    task.push_request(id=f"{message[0]}.{agent.removeprefix('agent:')}", retries=retries,
                      is_eager=False, called_directly=False, args=message, kwargs=kwargs,
                      delivery_info={"exchange": "", "routing_key": agent.removeprefix("agent:")})
    try:
        with pytest.raises(Retry) as retry:
            task(*message, **kwargs)
    finally:
        task.pop_request()
    assert retry.value.sig is not None
    return retry.value.sig


def test_a_retry_message_counts_its_waits_and_keeps_the_join(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the retry publishes: the join's hand-off kept, and ``waited`` one more after a
    wait, the same after a fault."""
    args = started(system)
    broker_lost_after_first_publish(monkeypatch)
    with pytest.raises(Retry):
        as_worker(system, INFRABOT, args)
    first, first_join = take_message(system, "argocd")
    given = {**first_join, "waited": 2}
    # its fork's fan-out still in doubt: a wait
    assert retried(system, ARGOCD, first, given, 4).kwargs == {**first_join, "waited": 3}
    away = Unavailable("the run log is away", reason="run_log_unavailable")
    monkeypatch.setattr(agents.tasks, "perform_hop", raising(away))
    assert retried(system, ARGOCD, first, given, 4).kwargs == {**first_join, "waited": 2}
