"""A hop performed again, as a redelivery or a retry performs it, against the real servers: the
steps its journal shows done are not called again, a recorded denial is the outcome again, and
the hand-off is published once (or, while in doubt, under a new generation that makes any
older copy do nothing).

The system runs embedded without its worker, so each hop is performed here, from the message
the orchestrator or a hop really queued on the in-memory broker.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e._harness import accepted_run_id, deployment, embedded_settings, events_of, post_webhook

from agents import HopOutcome, perform_hop
from agents.tasks import task_name
from infrabot.system import System, running_system
from orchestrator.runs import HopJournal

INFRABOT, ARGOCD = "agent:infrabot", "agent:argocd"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with running_system(embedded_settings(tmp_path / "s"), embedded_worker=False) as running:
        yield running


def take(system: System, queue: str) -> list[Any]:
    """The arguments of the one message queued for ``queue`` (taken off the broker)."""
    with system.celery.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            message = simple.get(timeout=5)
            message.ack()
            assert simple.qsize() == 0
        finally:
            simple.close()
    args, _kwargs, _embed = message.decode()
    return list(args)


def queued(system: System, queue: str) -> int:
    with system.celery.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            return int(simple.qsize())
        finally:
            simple.close()


def hop(system: System, agent: str, args: list[Any], **changed: Any) -> HopOutcome:
    run_id, workflow, token, scope, mode, generation = args
    values = {"run_id": run_id, "workflow": workflow, "agent": agent, "token": token,
              "scope": scope, "mode": mode, "generation": generation, **changed}
    return perform_hop(system.runtime, **values)


def started(system: System) -> list[Any]:
    accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
    args = take(system, "infrabot")
    assert args[5] == 0  # the first agent is enqueued once, by the orchestrator
    return args


def counts(system: System, run_id: str) -> collections.Counter[tuple[str, str, str]]:
    """What reached the servers for the run: (performed_by, action, reason)."""
    return collections.Counter((r.performed_by or "", r.action, r.reason)
                               for r in system.stack.audit.query(run_id=run_id))


def test_a_hop_performed_again_calls_nothing_again_and_hands_off_under_a_new_generation(
        system: System) -> None:
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    assert (first.status, first.next_agent, first.generation) == ("handed_off", ARGOCD, 1)
    assert first.next_token is not None
    before = counts(system, run_id)
    # The hop's worker died before it recorded the publication: performed again, it calls
    # nothing again and publishes under generation 2.
    again = hop(system, INFRABOT, args)
    assert (again.status, again.generation) == ("handed_off", 2)
    assert again.next_token is not None and again.next_token != first.next_token
    grown = counts(system, run_id) - before
    assert grown == collections.Counter({(INFRABOT, "token_exchange", "ok"): 1})  # hand-off only
    run = system.runtime.runs.get(run_id)
    assert run is not None
    assert [e.action for e in events_of(run, "called", INFRABOT)] == \
        ["metrics:query", "pr:read", "comment:post"]
    journal = HopJournal(system.runtime.runs)
    assert {n: (r.state, r.attempts) for n, r in journal.steps(run_id, INFRABOT).items()} == \
        {0: ("done", 1), 1: ("done", 1), 2: ("done", 1)}

    # Of the two copies of the hand-off, only the newest is performed.
    stale = hop(system, ARGOCD, args, token=first.next_token, scope=first.next_scope or "",
                generation=1)
    assert (stale.status, stale.reason) == ("duplicate", "stale hand-off")
    run = system.runtime.runs.get(run_id)
    assert run is not None and events_of(run, "exchanged", ARGOCD) == []
    performed = hop(system, ARGOCD, args, token=again.next_token,
                    scope=again.next_scope or "", generation=2)
    assert (performed.status, performed.next_agent) == ("handed_off", "agent:cleanup")
    assert hop(system, ARGOCD, args, token=first.next_token, generation=1).status == "duplicate"


def test_a_hand_off_recorded_sent_is_not_published_again(system: System) -> None:
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    HopJournal(system.runtime.runs).sent(run_id, ARGOCD, first.generation)
    before = counts(system, run_id)
    again = hop(system, INFRABOT, args)
    assert (again.status, again.next_agent, again.next_token, again.generation) == \
        ("handed_off", ARGOCD, None, 0)
    assert counts(system, run_id) == before  # not even a token was asked for


def test_the_task_publishes_the_next_hop_once(system: System) -> None:
    """The Celery task itself, performed twice with the message it was given: one message for
    the next agent, carrying the generation the journal holds as sent."""
    args = started(system)
    run_id = args[0]
    task = system.celery.tasks[task_name(system.celery, INFRABOT)]
    # .result, not .get(): a process that ran a worker before refuses a blocking get.
    summary = task.apply(args=args, task_id=f"{run_id}.infrabot").result
    assert summary == {"run_id": run_id, "agent": INFRABOT, "status": "handed_off"}
    assert task.apply(args=args, task_id=f"{run_id}.infrabot").result["status"] == "duplicate"
    assert queued(system, "argocd") == 1
    message = take(system, "argocd")
    delivery = HopJournal(system.runtime.runs).delivery(run_id, ARGOCD)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    assert message[5] == 1
    assert hop(system, ARGOCD, message).status == "handed_off"
    received = HopJournal(system.runtime.runs).delivery(run_id, ARGOCD)
    assert received is not None and received.state == "received"


def test_a_recorded_denial_is_the_outcome_of_every_retry(system: System) -> None:
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    system.stack.revocation.revoke_user("user:sam")
    handed = [run_id, args[1], first.next_token, first.next_scope, args[4], first.generation]
    denied = hop(system, ARGOCD, handed)
    assert denied.status == "denied" and "exchange for github.deployment_status.create" in \
        denied.reason, denied
    before = counts(system, run_id)
    assert hop(system, ARGOCD, handed) == denied  # the same outcome, nothing asked again
    assert counts(system, run_id) == before
    run = system.runtime.runs.get(run_id)
    assert run is not None and len(events_of(run, "exchange_denied", ARGOCD)) == 1
    [stop] = HopJournal(system.runtime.runs).steps(run_id, ARGOCD).values()
    assert (stop.step, stop.state, stop.reason) == (0, "denied", denied.reason)
