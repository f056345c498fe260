"""A branch that hands off on, hop by hop against the real servers (docs/graphs.md): the
scanner's task publishes the commenter's hop, passing on the join's hand-off it carries;
performed again it publishes nothing; a stale copy of a hand-off does nothing, nor publishes the
join; the join goes out once, when the branch's last agent has ended and so has every other
branch, and it waits for the branch's last agent itself.

The system runs embedded without its worker: each hop is performed here, from the message the
orchestrator or a hop really queued on the in-memory broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e._branch_chain import ARGOCD, CLEANUP, COMMENTER, INFRABOT, SCANNER, with_commenter
from e2e._harness import embedded_settings, events_of

import agents.tasks
from agents import HopOutcome
from agents.tasks import JoinHandOff, task_name
from hops.test_hop_resume import hop, queued, recorded_sent, started, take_message
from infrabot.system import System, running_system
from orchestrator.errors import Unavailable
from orchestrator.runs import HopJournal


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = embedded_settings(tmp_path / "s", workflows_dir=with_commenter(tmp_path / "w"))
    with running_system(settings, embedded_worker=False) as running:
        yield running


def as_worker(system: System, agent: str, args: list[Any], join: dict[str, Any]) -> Any:
    """``agent``'s Celery task performed as the worker performs it, from a message of a branch
    (``join``: the join's hand-off it carries)."""
    task = system.celery.tasks[task_name(system.celery, agent)]
    task.push_request(id=f"{args[0]}.{agent.removeprefix('agent:')}", retries=0,
                      is_eager=False)
    try:
        return task(*args, **join)
    finally:
        task.pop_request()


def forked(system: System) -> tuple[list[Any], Any]:
    args = started(system)
    fork = hop(system, INFRABOT, args)
    assert fork.status == "forked" and fork.join is not None
    recorded_sent(system, args[0], fork)
    return args, fork


def carried(fork: Any) -> dict[str, Any]:
    return {"join_token": fork.join.token, "join_scope": fork.join.scope}


def argocd_ended(system: System, args: list[Any], fork: Any) -> None:
    argocd = next(b for b in fork.branches if b.agent == ARGOCD)
    message = [args[0], args[1], argocd.token, argocd.scope, args[4], argocd.generation]
    assert as_worker(system, ARGOCD, message, carried(fork))["status"] == "branch_done"


def test_the_scanner_hands_off_to_the_commenter_once_passing_the_join_on(
        system: System) -> None:
    args, fork = forked(system)
    run_id = args[0]
    scanner = next(b for b in fork.branches if b.agent == SCANNER)
    message = [run_id, args[1], scanner.token, scanner.scope, args[4], scanner.generation]
    assert as_worker(system, SCANNER, message, carried(fork))["status"] == "handed_off"
    journal = HopJournal(system.runtime.runs)
    delivery = journal.delivery(run_id, COMMENTER)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    assert system.runtime.runs.hop_done(run_id, SCANNER)
    commenter_args, commenter_join = take_message(system, "commenter")
    assert commenter_args[5] == 1 and commenter_join == carried(fork)
    # Performed again (a redelivery): the hand-off is journaled sent, nothing is published.
    assert as_worker(system, SCANNER, message, carried(fork))["status"] == "duplicate"
    assert queued(system, "commenter") == 0
    delivery = journal.delivery(run_id, COMMENTER)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    # The commenter ends its branch; ArgoCD's still runs: no join yet.
    assert as_worker(system, COMMENTER, commenter_args, commenter_join)["status"] == \
        "branch_done"
    assert queued(system, "cleanup") == 0 and journal.delivery(run_id, CLEANUP) is None
    # ArgoCD ends the other branch, and publishes the join; copies of either publish nothing.
    argocd_ended(system, args, fork)
    assert as_worker(system, COMMENTER, commenter_args, commenter_join)["status"] == \
        "duplicate"
    join_args, _ = take_message(system, "cleanup")
    assert join_args[5] == 1
    assert hop(system, CLEANUP, join_args).status == "succeeded"


def test_a_stale_copy_does_nothing_and_publishes_no_join(system: System) -> None:
    """The scanner's hand-off in doubt, published again under generation 2: the copy of
    generation 1 does nothing, and though every other branch has ended it does not publish the
    join (it carries the join's hand-off of whatever fan-out it came from); the newer does."""
    args, fork = forked(system)
    run_id = args[0]
    argocd_ended(system, args, fork)
    scanner = next(b for b in fork.branches if b.agent == SCANNER)
    message = [run_id, args[1], scanner.token, scanner.scope, args[4], scanner.generation]
    first = hop(system, SCANNER, message)
    again = hop(system, SCANNER, message)  # its worker died before journaling it sent
    assert (first.status, first.generation, again.generation) == ("handed_off", 1, 2)
    system.runtime.runs.mark_hop_done(run_id, SCANNER, f"{run_id}.scanner")
    stale = [run_id, args[1], first.next_token, first.next_scope, args[4], 1]
    summary = as_worker(system, COMMENTER, stale, carried(fork))
    assert summary["status"] == "duplicate"
    assert queued(system, "cleanup") == 0
    newer = [run_id, args[1], again.next_token, again.next_scope, args[4], 2]
    assert as_worker(system, COMMENTER, newer, carried(fork))["status"] == "branch_done"
    assert queued(system, "cleanup") == 1


def test_the_join_waits_for_the_branch_s_last_agent(system: System) -> None:
    args, fork = forked(system)
    run_id, join = args[0], fork.join
    join_args = [run_id, args[1], join.token, join.scope, args[4], join.generation]
    runs = system.runtime.runs
    handed = None
    for branch in fork.branches:
        done = hop(system, branch.agent, args, token=branch.token, scope=branch.scope,
                   generation=branch.generation)
        if branch.agent == SCANNER:
            assert done.status == "handed_off" and done.next_agent == COMMENTER
            HopJournal(runs).sent(run_id, COMMENTER, done.generation)
            handed = done
        else:
            assert (branch.agent, done.status) == (ARGOCD, "branch_done")
        runs.mark_hop_done(run_id, branch.agent, f"{run_id}.{branch.agent}")
    with pytest.raises(Unavailable) as early:
        hop(system, CLEANUP, join_args)
    assert (early.value.reason, str(early.value)) == ("branches_unfinished",
                                                      f"the join waits for {COMMENTER}")
    assert handed is not None and handed.next_token is not None
    commented = hop(system, COMMENTER, join_args, token=handed.next_token,
                   scope=handed.next_scope or "", generation=handed.generation)
    assert commented.status == "branch_done"
    runs.mark_hop_done(run_id, COMMENTER, f"{run_id}.scanner")
    assert hop(system, CLEANUP, join_args).status == "succeeded"


def taken(system: System, queue: str, count: int) -> list[tuple[list[Any], dict[str, Any]]]:
    """The ``count`` messages queued for ``queue``, in order, and no more (taken off)."""
    with system.celery.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            messages = [simple.get(timeout=5) for _ in range(count)]
            for message in messages:
                message.ack()
            assert simple.qsize() == 0
        finally:
            simple.close()
    return [(list(args), dict(kwargs or {})) for args, kwargs, _ in
            (message.decode() for message in messages)]


def record(system: System, agent: str, outcome: HopOutcome, args: list[Any],
           fork: Any | None) -> None:
    """What the task of ``agent`` does after its hop's work (``outcome``), as the worker does
    it: publish, record, mark done, look for the join (``fork``: the fan-out whose join's
    hand-off the hop carries; None for the fork's own hop)."""
    task = system.celery.tasks[task_name(system.celery, agent)]
    task.push_request(id=f"{args[0]}.{agent.removeprefix('agent:')}", retries=0,
                      is_eager=False)
    try:
        carried = JoinHandOff(fork.join.token, fork.join.scope) if fork is not None else None
        agents.tasks._record(task, system.celery, system.runtime, outcome, agent, args[0],
                             args[1], args[4], carried)
    finally:
        task.pop_request()


def test_a_copy_whose_hand_off_was_renewed_beside_it_does_not_end_the_branch(
        system: System) -> None:
    """Two copies of the scanner's hop at once: X takes generation 1 of the commenter's
    hand-off, Y renews it (generation 2) before X records it sent. X's publication is stale:
    X must not mark the scanner done, or the branch would look ended (its hand-off still in
    doubt) and the join go out before the commenter ran, its comment never posted."""
    args, fork = forked(system)
    run_id = args[0]
    argocd_ended(system, args, fork)  # the other branch has ended: only the scanner's runs
    scanner = next(b for b in fork.branches if b.agent == SCANNER)
    message = [run_id, args[1], scanner.token, scanner.scope, args[4], scanner.generation]
    x = hop(system, SCANNER, message)
    y = hop(system, SCANNER, message)
    assert (x.status, x.generation, y.generation) == ("handed_off", 1, 2)
    record(system, SCANNER, x, args, fork)
    assert not system.runtime.runs.hop_done(run_id, SCANNER)
    assert queued(system, "cleanup") == 0  # no join while the commenter has not run
    record(system, SCANNER, y, args, fork)
    assert system.runtime.runs.hop_done(run_id, SCANNER) and queued(system, "cleanup") == 0
    (stale, stale_join), (newer, newer_join) = taken(system, "commenter", 2)
    assert (stale[5], newer[5]) == (1, 2)
    assert as_worker(system, COMMENTER, stale, stale_join)["status"] == "duplicate"
    assert queued(system, "cleanup") == 0
    assert as_worker(system, COMMENTER, newer, newer_join)["status"] == "branch_done"
    join, _ = take_message(system, "cleanup")
    assert hop(system, CLEANUP, join).status == "succeeded"
    run = system.runtime.runs.get(run_id)
    assert run is not None
    assert [c.action for c in events_of(run, "called", COMMENTER)] == ["comment:post"]
    # the older copy, again, once the commenter's hop is done: still stale, not "done"
    assert (hop(system, COMMENTER, stale).status, hop(system, COMMENTER, stale).reason) == \
        ("duplicate", "stale hand-off")


def test_a_fork_copy_whose_fan_out_was_renewed_beside_it_does_not_mark_the_fork_done(
        system: System) -> None:
    """The same for the fork's hop: X publishes the branches under generation 1, Y renewed
    them (2) before X recorded them sent. Were X to mark the fork done and Y die before
    publishing, Y's redelivery would find the hop done and publish nothing: the branches
    stranded. X records nothing more; Y's redelivery publishes the fan-out again."""
    args = started(system)
    run_id = args[0]
    x = hop(system, INFRABOT, args)
    y = hop(system, INFRABOT, args)
    assert ({d.generation for d in x.branches}, {d.generation for d in y.branches}) == \
        ({1}, {2})
    record(system, INFRABOT, x, args, None)
    assert not system.runtime.runs.hop_done(run_id, INFRABOT)
    # Y died before publishing: its message, delivered again, forks again
    task = system.celery.tasks[task_name(system.celery, INFRABOT)]
    assert task.apply(args=args, task_id=f"{run_id}.infrabot").result["status"] == "forked"
    assert system.runtime.runs.hop_done(run_id, INFRABOT)
    for queue, agent in (("argocd", ARGOCD), ("scanner", SCANNER)):
        (stale, _), (current, _) = taken(system, queue, 2)
        assert (stale[5], current[5]) == (1, 3)
        delivery = HopJournal(system.runtime.runs).delivery(run_id, agent)
        assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 3)
