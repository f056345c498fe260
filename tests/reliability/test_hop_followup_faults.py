"""A hop's work is done, then what follows it fails: the run log or the broker goes away before
the hop could publish its hand-off, journal it sent, end the run or mark itself done.

Issue 20: those writes were not retried, so the run waited for its deadline. Now the hop is
retried like its work, and its journal makes the retry resume at the follow-up: no effect twice,
the next agent once. A store or broker that fails at exactly that instant cannot be caused from
outside, so each test makes one method fail once (the only fakes here); everything else is the
embedded system, real services and real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Reject
from e2e._harness import (
    ONE_PASS_EXCHANGES,
    RUN_TIMEOUT,
    accepted_run_id,
    assert_post_deploy_audit,
    deployment,
    embedded_settings,
    events_of,
    post_webhook,
)
from kombu.exceptions import OperationalError

import agents.tasks
from infrabot.system import System, running_system
from orchestrator.errors import Unavailable
from orchestrator.runs import Run


def failing_once(original: Callable[..., Any], error: Exception,
                 when: Callable[..., bool]) -> Callable[..., Any]:
    calls = {"failed": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        if not calls["failed"] and when(*args, **kwargs):
            calls["failed"] += 1
            raise error
        return original(*args, **kwargs)

    return call


def deploy(system: System) -> Run:
    run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
    return system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT + 30)


def assert_once_each(system: System, run: Run, retried: str, reason: str,
                     exchanges: dict[str, int] = ONE_PASS_EXCHANGES) -> None:
    """The run succeeded after one retry of ``retried``; every call of the story happened once
    (``exchanges``: the token exchanges each agent made, a hand-off exchanged again included)."""
    assert (run.status, run.reason) == ("succeeded", "ok"), run.reason
    assert [(e.agent, e.detail.reason) for e in run.events if e.kind == "retrying"] == \
        [(retried, reason)]
    assert_post_deploy_audit(system.stack.audit.query(run_id=run.run_id), run.run_id, exchanges)
    assert len(events_of(run, "finished")) == 1


def argocd_marks_done(run_id: str, agent: str, task_id: str) -> bool:
    return agent == "agent:argocd"


def cleanup_ends_run(run_id: str, status: str, reason: str, **kw: Any) -> bool:
    return kw.get("agent") == "agent:cleanup"


@pytest.mark.parametrize(("write", "when", "agent"), [
    ("mark_hop_done", argocd_marks_done, "agent:argocd"),  # after the hand-off was published
    ("finish", cleanup_ends_run, "agent:cleanup"),  # the last hop ending the run
])
def test_run_log_lost_after_the_hops_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          write: str, when: Callable[..., bool],
                                          agent: str) -> None:
    with running_system(embedded_settings(tmp_path / "s")) as system:
        runs = system.runtime.runs
        monkeypatch.setattr(runs, write, failing_once(
            getattr(runs, write), Unavailable("gone", reason="run_log_unavailable"), when))
        run = deploy(system)
        assert_once_each(system, run, agent, "run_log_unavailable")


def test_broker_lost_while_handing_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fan-out's publish fails: its hand-offs, journaled as in doubt, are minted and
    published again under new generations when InfraBot's hop is retried; the join goes out
    once, under its first generation, when both branches have ended, and runs once."""
    monkeypatch.setattr(agents.tasks, "publish_fork", failing_once(
        agents.tasks.publish_fork, OperationalError("broker gone"), lambda *_, **__: True))
    with running_system(embedded_settings(tmp_path / "s")) as system:
        run = deploy(system)
        assert_once_each(system, run, "agent:infrabot", "broker_unavailable",
                         {**ONE_PASS_EXCHANGES, "agent:infrabot": 9})
        assert len(events_of(run, "handed_off", "agent:infrabot")) == 6  # exchanged again
        for agent, generation in (("agent:argocd", 2), ("agent:scanner", 2),
                                  ("agent:cleanup", 1)):
            delivery = agents.tasks.HopJournal(system.runtime.runs).delivery(run.run_id, agent)
            assert delivery is not None and (delivery.state, delivery.attempts) == \
                ("received", generation)


def test_broker_lost_while_publishing_the_join(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The branch that ends last, its hop recorded done, cannot publish the join (the broker
    away for that moment): retried, the copy finds its hop done and publishes the join under a
    new generation (the first, taken before the failed publish, was still in doubt); the join
    runs once.
    Before, Celery's chord counted the branches in a result backend: a Redis away at that moment
    left the join unpublished until the run's deadline."""
    def join(app: Any, agent: str, *_: Any, **__: Any) -> bool:
        return agent == "agent:cleanup"

    monkeypatch.setattr(agents.tasks, "enqueue", failing_once(
        agents.tasks.enqueue, OperationalError("broker gone"), join))
    with running_system(embedded_settings(tmp_path / "s")) as system:
        run = deploy(system)
        [last] = {e.agent for e in run.events if e.kind == "retrying"}
        assert last in ("agent:argocd", "agent:scanner")
        assert_once_each(system, run, last, "broker_unavailable")
        delivery = agents.tasks.HopJournal(system.runtime.runs).delivery(run.run_id,
                                                                          "agent:cleanup")
        assert delivery is not None and (delivery.state, delivery.attempts) == ("received", 2)


class _Request:  # what retry_or_fail reads of Celery's task.request
    retries = 0
    kwargs: dict[str, Any] | None = None


class _TaskWhoseRetryCannotBePublished:
    """Celery's Task.retry when publishing the retry fails: Reject(requeue=False)."""

    request = _Request()

    def retry(self, **_: Any) -> Exception:
        raise Reject(OperationalError("broker gone"), requeue=False)


def test_a_retry_that_cannot_be_published_puts_the_hop_back(tmp_path: Path) -> None:
    """Not a drop: the hop goes back to its queue (RabbitMQ redelivers it, Redis restores it),
    so a broker back an instant after the failed publish still has it."""
    with running_system(embedded_settings(tmp_path / "s")) as system:
        run = deploy(system)
        task = _TaskWhoseRetryCannotBePublished()
        with pytest.raises(Reject) as rejected:
            agents.tasks._retry_or_fail(task, system.runtime,  # type: ignore[arg-type]
                                        agents.tasks.get_logger(), "agent:argocd", run.run_id,
                                        "aws_http_503")
    assert rejected.value.requeue is True
