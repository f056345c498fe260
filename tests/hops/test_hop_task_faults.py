"""A hop's Celery task that raises, in its work or in what follows it, still ends its run (in a
fan-out's branch, the branch) with a clear reason, never leaves it running until its deadline:
a workflow this worker does not know (renamed or removed by a deploy while the run went on), a
bug after the work, the hop's soft time limit in the work or in what follows it.

The system runs embedded without its worker: each task is performed here, as the worker performs
it, from the message the orchestrator or a hop really queued on the in-memory broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from e2e._harness import embedded_settings, events_of
from structlog.testing import capture_logs

import agents.tasks
from agents.tasks import task_name
from hops.test_hop_resume import hop, queued, recorded_sent, started, take
from infrabot.system import System, running_system
from orchestrator.runs import Run

INFRABOT, ARGOCD = "agent:infrabot", "agent:argocd"
SCANNER, CLEANUP = "agent:scanner", "agent:cleanup"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with running_system(embedded_settings(tmp_path / "s"), embedded_worker=False) as running:
        yield running


def as_worker(system: System, agent: str, args: list[Any], kwargs: dict[str, Any] | None = None,
              **request: Any) -> Any:
    """``agent``'s Celery task performed as the worker performs it, with the message's
    ``args`` and ``kwargs`` (a branch's: the join's hand-off); ``request``: retries ..."""
    task = system.celery.tasks[task_name(system.celery, agent)]
    task.push_request(**{"id": f"{args[0]}.{agent.removeprefix('agent:')}", "retries": 0,
                         "is_eager": False, **request})
    try:
        return task(*args, **(kwargs or {}))
    finally:
        task.pop_request()


def ended(system: System, run_id: str) -> Run:
    run = system.runtime.runs.get(run_id)
    assert run is not None
    return run


def raising(error: BaseException) -> Any:
    def fail(*_: Any, **__: Any) -> None:
        raise error
    return fail


def test_a_hop_of_a_workflow_this_worker_does_not_know_ends_its_run(system: System) -> None:
    args = started(system)
    args[1] = "post-deploy-v1"  # renamed by a deploy while the run was queued
    summary = as_worker(system, INFRABOT, args)
    assert summary["status"] == "failed"
    run = ended(system, args[0])
    assert run.status == "failed"
    assert run.reason == "agent:infrabot: unknown_workflow 'post-deploy-v1' (not in this " \
                         "worker's workflows)"
    assert events_of(run, "called") == []  # nothing was done


@pytest.mark.parametrize(("error", "reason", "traceback"), [
    (RuntimeError("a bug"), "agent:infrabot: internal error (RuntimeError)", True),
    (SoftTimeLimitExceeded(), "agent:infrabot: time_limit_exceeded", False),
], ids=["bug", "time_limit"])
def test_a_fault_after_the_hops_work_ends_the_run_with_its_reason(
        system: System, monkeypatch: pytest.MonkeyPatch, error: BaseException, reason: str,
        traceback: bool) -> None:
    monkeypatch.setattr(agents.tasks, "publish_fork", raising(error))  # the fan-out's publish
    args = started(system)
    with capture_logs() as logs:
        summary = as_worker(system, INFRABOT, args)
    assert summary["status"] == "failed"
    run = ended(system, args[0])
    assert (run.status, run.reason) == ("failed", reason)
    assert [e.action for e in events_of(run, "called", INFRABOT)] == \
        ["metrics:query", "pr:read", "comment:post"]  # the work was done, once
    assert system.runtime.runs.hop_done(args[0], INFRABOT)
    assert any("exc_info" in e for e in logs) is traceback


def test_the_time_limit_in_the_hops_work_is_its_own_reason(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.tasks, "perform_hop", raising(SoftTimeLimitExceeded()))
    args = started(system)
    with capture_logs() as logs:
        assert as_worker(system, INFRABOT, args)["status"] == "failed"
    run = ended(system, args[0])
    assert (run.status, run.reason) == ("failed", "agent:infrabot: time_limit_exceeded")
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["hop_time_limit"]
    assert not any("exc_info" in e for e in logs)


def test_a_fault_after_a_branchs_work_ends_the_branch_and_the_other_branchs_end_the_join(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    args = started(system)
    fork = hop(system, INFRABOT, args)
    recorded_sent(system, args[0], fork)
    argocd = next(b for b in fork.branches if b.agent == ARGOCD)
    runs = system.runtime.runs
    done = runs.mark_hop_done
    failures = [RuntimeError("a bug")]

    def mark_hop_done(run_id: str, agent: str, task_id: str) -> bool:
        if failures:
            raise failures.pop()
        return done(run_id, agent, task_id)

    monkeypatch.setattr(runs, "mark_hop_done", mark_hop_done)
    assert fork.join is not None
    join = {"join_token": fork.join.token, "join_scope": fork.join.scope}
    message = [args[0], args[1], argocd.token, argocd.scope, args[4], argocd.generation]
    summary = as_worker(system, ARGOCD, message, join)
    assert summary["status"] == "failed"
    run = ended(system, args[0])
    assert run.status == "running"  # the join ends the run, once every branch has ended
    [branch] = events_of(run, "branch_ended", ARGOCD)
    assert (branch.status, branch.reason) == \
        ("failed", "agent:argocd: internal error (RuntimeError)")
    assert runs.hop_done(args[0], ARGOCD)
    assert queued(system, "cleanup") == 0  # the scanner's branch still runs
    scanner = next(b for b in fork.branches if b.agent == SCANNER)
    message = [args[0], args[1], scanner.token, scanner.scope, args[4], scanner.generation]
    assert as_worker(system, SCANNER, message, join)["status"] == "branch_done"
    join_message = take(system, "cleanup")
    assert as_worker(system, CLEANUP, join_message)["status"] == "failed"
    run = ended(system, args[0])
    assert (run.status, run.reason) == ("failed", "agent:argocd: internal error (RuntimeError)")
    assert events_of(run, "called", CLEANUP) == []  # the join acted on nothing
