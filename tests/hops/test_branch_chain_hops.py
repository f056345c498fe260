"""A branch that hands off on, hop by hop against the real servers (docs/graphs.md): the
scanner's task, a member of the fan-out's chord, replaces itself with the commenter's hop
(Celery's Task.replace: same task id, same chord) and leaves no result of its own; performed
again it publishes nothing; a stale copy of a hand-off leaves no result either (the chord counts
each branch once); the join waits for the branch's last agent.

The system runs embedded without its worker: each hop is performed here, from the message the
orchestrator or a hop really queued on the in-memory broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Ignore
from e2e._branch_chain import ARGOCD, CLEANUP, COMMENTER, INFRABOT, SCANNER, with_commenter
from e2e._harness import embedded_settings

from agents.tasks import task_name
from hops.test_hop_resume import hop, queued, started
from infrabot.system import System, running_system
from orchestrator.errors import Unavailable
from orchestrator.runs import HopJournal

CHORD = {"task": "agents.cleanup", "args": [], "kwargs": {}, "options": {}}  # as a request has it


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = embedded_settings(tmp_path / "s", workflows_dir=with_commenter(tmp_path / "w"))
    with running_system(settings, embedded_worker=False) as running:
        yield running


def in_chord(system: System, agent: str, args: list[Any], task_id: str) -> Any:
    """``agent``'s Celery task performed as the worker performs a member of a chord's header."""
    task = system.celery.tasks[task_name(system.celery, agent)]
    task.push_request(id=task_id, chord=CHORD, group="g-1", group_index=1, retries=0,
                      is_eager=False)
    try:
        return task(*args)
    finally:
        task.pop_request()


def forked(system: System) -> tuple[list[Any], Any]:
    args = started(system)
    fork = hop(system, INFRABOT, args)
    assert fork.status == "forked" and fork.join is not None
    return args, fork


def test_the_scanner_replaces_itself_with_the_commenter_once(system: System) -> None:
    args, fork = forked(system)
    run_id = args[0]
    scanner = next(b for b in fork.branches if b.agent == SCANNER)
    message = [run_id, args[1], scanner.token, scanner.scope, args[4], scanner.generation]
    with pytest.raises(Ignore):  # replaced: no result of its own, not counted by the chord
        in_chord(system, SCANNER, message, f"{run_id}.scanner")
    journal = HopJournal(system.runtime.runs)
    delivery = journal.delivery(run_id, COMMENTER)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    assert system.runtime.runs.hop_done(run_id, SCANNER)
    with system.celery.connection_for_read() as conn:
        queue = conn.SimpleQueue("commenter")
        try:
            published = queue.get(timeout=5)
            published.ack()
        finally:
            queue.close()
    assert published.headers["id"] == f"{run_id}.scanner"  # the id, and the place, it replaced
    assert (published.headers["group"], published.headers["group_index"]) == ("g-1", 1)
    commenter_args = list(published.decode()[0])
    assert commenter_args[5] == 1
    # Performed again (a redelivery): the hand-off is journaled sent, nothing is published.
    with pytest.raises(Ignore):
        in_chord(system, SCANNER, message, f"{run_id}.scanner")
    assert queued(system, "commenter") == 0
    delivery = journal.delivery(run_id, COMMENTER)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)
    # The commenter ends the branch: its summary is the branch's result in the chord.
    assert in_chord(system, COMMENTER, commenter_args, f"{run_id}.scanner") == \
        {"run_id": run_id, "agent": COMMENTER, "status": "branch_done"}
    # ... and a copy of it performed again returns its summary too (a hop that ended a branch
    # is counted: the join itself waits for the run log, never for the count alone).
    assert in_chord(system, COMMENTER, commenter_args, f"{run_id}.scanner")["status"] == \
        "duplicate"


def test_a_stale_copy_in_a_chord_leaves_no_result(system: System) -> None:
    """The scanner's hand-off in doubt, published again under generation 2: the copy of
    generation 1 does nothing and raises Ignore, so the chord counts only the newer copy."""
    args, fork = forked(system)
    run_id = args[0]
    scanner = next(b for b in fork.branches if b.agent == SCANNER)
    message = [run_id, args[1], scanner.token, scanner.scope, args[4], scanner.generation]
    first = hop(system, SCANNER, message)
    again = hop(system, SCANNER, message)  # its worker died before journaling it sent
    assert (first.status, first.generation, again.generation) == ("handed_off", 1, 2)
    stale = [run_id, args[1], first.next_token, first.next_scope, args[4], 1]
    with pytest.raises(Ignore):
        in_chord(system, COMMENTER, stale, f"{run_id}.scanner")
    newer = [run_id, args[1], again.next_token, again.next_scope, args[4], 2]
    assert in_chord(system, COMMENTER, newer, f"{run_id}.scanner")["status"] == "branch_done"


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
