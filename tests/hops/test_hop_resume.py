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
from orchestrator.errors import Unavailable
from orchestrator.runs import HopJournal

INFRABOT, ARGOCD = "agent:infrabot", "agent:argocd"
SCANNER, CLEANUP = "agent:scanner", "agent:cleanup"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with running_system(embedded_settings(tmp_path / "s"), embedded_worker=False) as running:
        yield running


def take(system: System, queue: str) -> list[Any]:
    """The arguments of the one message queued for ``queue`` (taken off the broker)."""
    return take_message(system, queue)[0]


def take_message(system: System, queue: str) -> tuple[list[Any], dict[str, Any]]:
    """The arguments and keywords of the one message queued for ``queue`` (taken off)."""
    with system.celery.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            message = simple.get(timeout=5)
            message.ack()
            assert simple.qsize() == 0
        finally:
            simple.close()
    args, kwargs, _embed = message.decode()
    return list(args), dict(kwargs or {})


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
    assert args[5] == 1  # the first hop, journaled by the orchestrator like any hand-off
    return args


def recorded_sent(system: System, run_id: str, fork: HopOutcome) -> None:
    """What the fork's task records once it has published its branches: their hand-offs sent,
    all at once (a branch's first hop claims its own only then)."""
    assert HopJournal(system.runtime.runs).published_together(
        run_id, {d.agent: d.generation for d in fork.branches})


def counts(system: System, run_id: str) -> collections.Counter[tuple[str, str, str]]:
    """What reached the servers for the run: (performed_by, action, reason)."""
    return collections.Counter((r.performed_by or "", r.action, r.reason)
                               for r in system.stack.audit.query(run_id=run_id))


def test_a_hop_performed_again_calls_nothing_again_and_forks_under_a_new_generation(
        system: System) -> None:
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    assert (first.status, [b.agent for b in first.branches]) == ("forked", [ARGOCD, SCANNER])
    assert first.join is not None and first.join.agent == CLEANUP
    assert {d.generation for d in first.branches} == {1}
    assert first.join.generation == 0  # journaled when it goes out, once the branches ended
    before = counts(system, run_id)
    # The hop's worker died before it recorded the publication: performed again, it calls
    # nothing again and mints the fan-out again under generation 2.
    again = hop(system, INFRABOT, args)
    assert again.status == "forked" and again.join is not None
    assert {d.generation for d in again.branches} == {2} and again.join.generation == 0
    assert again.branches[0].token != first.branches[0].token
    grown = counts(system, run_id) - before
    assert grown == collections.Counter({(INFRABOT, "token_exchange", "ok"): 3})  # hand-offs
    run = system.runtime.runs.get(run_id)
    assert run is not None
    assert [e.action for e in events_of(run, "called", INFRABOT)] == \
        ["metrics:query", "pr:read", "comment:post"]
    journal = HopJournal(system.runtime.runs)
    assert {n: (r.state, r.attempts) for n, r in journal.steps(run_id, INFRABOT).items()} == \
        {0: ("done", 1), 1: ("done", 1), 2: ("done", 1)}

    # Of the two copies of each hand-off, only the newest is performed.
    recorded_sent(system, run_id, again)
    stale = hop(system, ARGOCD, args, token=first.branches[0].token,
                scope=first.branches[0].scope, generation=1)
    assert (stale.status, stale.reason) == ("duplicate", "stale hand-off")
    run = system.runtime.runs.get(run_id)
    assert run is not None and events_of(run, "exchanged", ARGOCD) == []
    performed = hop(system, ARGOCD, args, token=again.branches[0].token,
                    scope=again.branches[0].scope, generation=2)
    assert performed.status == "branch_done"
    assert hop(system, ARGOCD, args, token=first.branches[0].token, generation=1).status == \
        "duplicate"


def test_a_fan_out_recorded_sent_is_not_published_again(system: System) -> None:
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    assert first.join is not None
    for delivery in (*first.branches, first.join):
        HopJournal(system.runtime.runs).sent(run_id, delivery.agent, delivery.generation)
    before = counts(system, run_id)
    again = hop(system, INFRABOT, args)
    assert (again.status, again.next_agent, again.branches, again.join) == \
        ("forked", ARGOCD, (), None)
    assert counts(system, run_id) == before  # not even a token was asked for


@pytest.mark.parametrize("past_doubt", ["sent", "received"])
def test_a_fan_out_partly_past_doubt_is_not_published_again_and_its_copies_hold(
        system: System, past_doubt: str) -> None:
    """The fork hop published its branches; one branch's hand-off got past doubt (marked sent
    before the run log failed, or already taken by the branch's hop), the rest did not. The
    hop performed again publishes nothing and moves no hand-off to a new generation, so the
    published copy of the other branch, with the join's hand-off it carries, is still the one
    performed (a stale one would never end its branch: the join would never go out)."""
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    assert first.join is not None
    journal = HopJournal(system.runtime.runs)
    argocd = first.branches[0]
    if past_doubt == "sent":
        journal.sent(run_id, argocd.agent, argocd.generation)
    else:
        assert journal.receive(run_id, argocd.agent, argocd.generation)
    again = hop(system, INFRABOT, args)
    assert (again.status, again.branches, again.join) == ("forked", (), None)
    record = journal.delivery(run_id, SCANNER)
    assert record is not None and (record.state, record.attempts) == ("sending", 1)
    assert journal.delivery(run_id, CLEANUP) is None  # the join goes out after the branches
    scanner = first.branches[1]
    assert hop(system, SCANNER, args, token=scanner.token, scope=scanner.scope,
               generation=scanner.generation).status == "branch_done"


def test_the_task_publishes_the_fan_out_once_and_the_last_branch_the_join(
        system: System) -> None:
    """The Celery tasks themselves, each performed twice with the message it was given: the
    fork publishes one message for each branch, carrying the generation the journal holds as
    sent and the join's hand-off; the join goes out once, when the second branch has ended, as
    the run log shows it (no counter elsewhere), under a generation of its own."""
    args = started(system)
    run_id = args[0]
    journal = HopJournal(system.runtime.runs)

    def perform(agent: str, queue: str, message: list[Any], join: dict[str, Any]) -> str:
        task = system.celery.tasks[task_name(system.celery, agent)]
        # .result, not .get(): a process that ran a worker before refuses a blocking get.
        return str(task.apply(args=message, kwargs=join,
                              task_id=f"{run_id}.{queue}").result["status"])

    assert perform(INFRABOT, "infrabot", args, {}) == "forked"
    assert perform(INFRABOT, "infrabot", args, {}) == "duplicate"
    assert (queued(system, "argocd"), queued(system, "scanner"), queued(system, "cleanup")) == \
        (1, 1, 0)
    argocd, argocd_join = take_message(system, "argocd")
    scanner, scanner_join = take_message(system, "scanner")
    for agent in (ARGOCD, SCANNER):
        delivery = journal.delivery(run_id, agent)
        assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    assert journal.delivery(run_id, CLEANUP) is None
    assert (argocd[5], scanner[5]) == (1, 1)
    assert argocd_join == scanner_join and set(argocd_join) == {"join_token", "join_scope"}

    assert perform(ARGOCD, "argocd", argocd, argocd_join) == "branch_done"
    assert perform(ARGOCD, "argocd", argocd, argocd_join) == "duplicate"
    assert queued(system, "cleanup") == 0  # the scanner's branch still runs
    assert perform(SCANNER, "scanner", scanner, scanner_join) == "branch_done"
    assert perform(SCANNER, "scanner", scanner, scanner_join) == "duplicate"
    assert perform(ARGOCD, "argocd", argocd, argocd_join) == "duplicate"
    join, carried = take_message(system, "cleanup")  # exactly one
    assert carried == {}
    delivery = journal.delivery(run_id, CLEANUP)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    assert join[2:] == [argocd_join["join_token"], argocd_join["join_scope"], args[4], 1]
    assert hop(system, CLEANUP, join).status == "succeeded"


def test_the_join_waits_for_every_branch_and_runs_once(system: System) -> None:
    """The join goes out once the run log shows every branch ended; its hop checks that again
    (a join delivered early waits, a retry, until the run log shows every branch done), and a
    second copy of it does nothing."""
    args = started(system)
    run_id = args[0]
    forked = hop(system, INFRABOT, args)
    assert forked.join is not None
    recorded_sent(system, run_id, forked)
    join = forked.join
    join_args = [run_id, args[1], join.token, join.scope, args[4], join.generation]
    with pytest.raises(Unavailable) as early:
        hop(system, CLEANUP, join_args)
    assert early.value.reason == "branches_unfinished"
    for branch in forked.branches:
        done = hop(system, branch.agent, args, token=branch.token, scope=branch.scope,
                   generation=branch.generation)
        assert done.status == "branch_done"
        system.runtime.runs.mark_hop_done(run_id, branch.agent, f"{run_id}.{branch.agent}")
    assert hop(system, CLEANUP, join_args).status == "succeeded"
    system.runtime.runs.mark_hop_done(run_id, CLEANUP, f"{run_id}.cleanup")
    assert hop(system, CLEANUP, join_args).status == "duplicate"
    calls = collections.Counter(a for (who, a, _) in counts(system, run_id).elements()
                                if who == CLEANUP and a != "token_exchange")
    assert calls == collections.Counter({"tags:delete": 1, "incident:resolve": 1})


def test_a_recorded_denial_is_the_outcome_of_every_retry(system: System) -> None:
    args = started(system)
    run_id = args[0]
    first = hop(system, INFRABOT, args)
    recorded_sent(system, run_id, first)
    system.stack.revocation.revoke_user("user:sam")
    branch = first.branches[0]
    handed = [run_id, args[1], branch.token, branch.scope, args[4], branch.generation]
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
