"""A hop resumed under a workflow whose steps changed (its workers restarted on a deploy of new
workflow files while the run went on) is never resumed by step number: a journaled step whose
action is not the plan's at its number ends the hop, and the run, ``workflow_changed``: no done
step is performed again, no new step is passed over. Steps added after the journaled ones are no
change: the hop goes on with them.

The system runs embedded without its worker (see test_hop_resume)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e._harness import embedded_settings

from hops.test_hop_resume import counts, hop, started
from hops.test_hop_task_faults import as_worker
from infrabot.system import System, running_system
from orchestrator.runs import HopJournal
from orchestrator.workflows import Step, Workflow
from tests._events import detail

INFRABOT = "agent:infrabot"
TAG = Step(action="aws.ec2.create_tags",
           params={"Resources": ["i-0a1b2c3d4e5f60003"], "Tags": [{"Key": "k", "Value": "v"}]})


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with running_system(embedded_settings(tmp_path / "s"), embedded_worker=False) as running:
        yield running


def deployed(system: System, monkeypatch: pytest.MonkeyPatch,
             steps: Callable[[tuple[Step, ...]], tuple[Step, ...]]) -> Workflow:
    """The post-deploy workflow with InfraBot's steps changed by ``steps``, deployed to the
    workers (the run goes on under its name)."""
    v1 = system.runtime.workflows["post-deploy"]
    v2 = v1.model_copy(update={"agents": tuple(
        p.model_copy(update={"steps": steps(p.steps)}) if p.agent == INFRABOT else p
        for p in v1.agents)})
    monkeypatch.setitem(system.runtime.workflows, "post-deploy", v2)
    return v1


def first_step_done(system: System, run_id: str, v1: Workflow) -> str:
    """InfraBot's first step under v1 (the latency: nominal), journaled done: the hop was
    lost after it."""
    action = v1.plan(INFRABOT).steps[0].action
    journal = HopJournal(system.runtime.runs)
    journal.start(run_id, INFRABOT, 0, action)
    journal.finish(run_id, INFRABOT, 0, "done", reason=None, event=detail(
        "called", step_id="latency", result={"series": [{"pointlist": [[0, 120]]}]}))
    return action


@pytest.mark.parametrize(("change", "planned"), [
    (lambda steps: (TAG, *steps), TAG.action),  # a step inserted before the done one
    (lambda steps: steps[1:], "github.pull.read"),  # the done step removed
], ids=["inserted", "removed"])
def test_a_changed_step_ends_the_run_workflow_changed_and_calls_nothing(
        system: System, monkeypatch: pytest.MonkeyPatch,
        change: Callable[[tuple[Step, ...]], tuple[Step, ...]], planned: str) -> None:
    args = started(system)
    run_id = args[0]
    v1 = deployed(system, monkeypatch, change)
    done = first_step_done(system, run_id, v1)
    before = counts(system, run_id)
    assert as_worker(system, INFRABOT, args)["status"] == "failed"
    run = system.runtime.runs.get(run_id)
    assert run is not None
    assert run.status == "failed"
    assert run.reason == f"agent:infrabot: workflow_changed (step 0 was {done}, the workflow " \
                         f"now has {planned})"
    after = counts(system, run_id)
    # its end revoked the run (the orchestrator's record), and nothing else reached a server
    assert after.pop(("client:orchestrator", "revoke", "run_revoked")) == 1
    assert after == before  # nothing asked for, nothing called


def test_steps_added_after_the_journaled_ones_are_performed(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    args = started(system)
    run_id = args[0]
    v1 = deployed(system, monkeypatch, lambda steps: (*steps, TAG))
    done = first_step_done(system, run_id, v1)
    outcome = hop(system, INFRABOT, args)
    assert outcome.status == "forked", outcome
    actions = [r.action for _, r in sorted(
        HopJournal(system.runtime.runs).steps(run_id, INFRABOT).items())]
    assert actions == [done, "github.pull.read", "github.comment.create", TAG.action]
    assert collections.Counter(r.action for r in system.stack.audit.query(run_id=run_id)
                               if r.performed_by == INFRABOT)["metrics:query"] == 0
