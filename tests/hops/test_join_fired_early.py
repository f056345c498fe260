"""A join fired before every branch ended waits for them until its run's deadline, not for the
7 retries of a transient fault: Celery's chord counts a branch twice when a copy of its last hop
is redelivered after it returned (its acknowledgement lost: a broker connection dropped, a
worker killed between the return and the ack), and fires the join while the other branch still
runs. The branch's real end cannot fire it again, so a join that gave up would fail a healthy
run.

The system runs embedded without its worker (see test_hop_resume); the run is journaled here as
InfraBot's fork left it, in static-token mode (no tokens needed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery.exceptions import Retry
from e2e._harness import embedded_settings

from agents.tasks import MAX_RETRIES
from hops.test_hop_task_faults import CHORD, as_worker
from infrabot.system import System, running_system
from orchestrator.ci import CIEvent
from orchestrator.runs import HopJournal, RunStore

RUN = "run-0123456789abcdef"
ARGOCD, SCANNER, CLEANUP = "agent:argocd", "agent:scanner", "agent:cleanup"
DEADLINE = 60


SAM_DEPLOYS = CIEvent(delivery_id="d-1", event_type="deployment", user="user:sam",
                      sender_login="sam", repository="acme/service-x", service="service-x",
                      environment="prod", commit="9f2c1e7", trigger="ci_pipeline", pr=124)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = embedded_settings(tmp_path / "s", run_deadline_seconds=DEADLINE)
    with running_system(settings, embedded_worker=False) as running:
        yield running


def forked(system: System, started: Callable[[], datetime]) -> list[int]:
    """A post-deploy run started at ``started()`` that InfraBot forked: ArgoCD's branch ended
    (its hop done), the scanner's still runs. The generation of each hand-off."""
    with RunStore(system.runtime.runs.target, clock=started) as runs:
        runs.create(RUN, workflow="post-deploy", event=SAM_DEPLOYS, mode="static")
    system.runtime.runs.mark_running(RUN)
    journal = HopJournal(system.runtime.runs)
    generations = journal.send_together(RUN, [ARGOCD, SCANNER, CLEANUP])
    assert generations is not None
    for agent, generation in zip([ARGOCD, SCANNER, CLEANUP], generations, strict=True):
        journal.sent(RUN, agent, generation)
    assert journal.receive(RUN, ARGOCD, generations[0])
    system.runtime.runs.mark_hop_done(RUN, ARGOCD, f"{RUN}.argocd")
    return generations


def message(generation: int) -> list[object]:
    return [RUN, "post-deploy", "static-token", "", "static", generation]


def test_a_join_fired_by_a_branch_counted_twice_waits_past_the_retry_limit(
        system: System) -> None:
    generations = forked(system, lambda: datetime.now(UTC))
    # ArgoCD's last hop redelivered after it returned: it returns again (the chord counts it)
    redelivered = as_worker(system, ARGOCD, message(generations[0]), chord=CHORD, group="g-1",
                            group_index=0)
    assert redelivered["status"] == "duplicate"
    # ... so the join runs while the scanner still does, past the retries of a fault
    with pytest.raises(Retry):
        as_worker(system, CLEANUP, message(generations[2]), retries=MAX_RETRIES + 5)
    run = system.runtime.runs.get(RUN)
    assert run is not None and run.status == "running"
    [retrying] = [e.detail for e in run.events if e.kind == "retrying"]
    assert (retrying.reason, retrying.attempt) == ("branches_unfinished", MAX_RETRIES + 6)
    assert retrying.in_seconds <= 8


def test_past_the_runs_deadline_the_join_ends_it_failed(system: System) -> None:
    generations = forked(system, lambda: datetime.now(UTC) - timedelta(seconds=DEADLINE + 1))
    summary = as_worker(system, CLEANUP, message(generations[2]), retries=MAX_RETRIES)
    assert summary["status"] == "failed"
    run = system.runtime.runs.get(RUN)
    assert run is not None
    assert (run.status, run.reason) == (
        "failed", f"agent:cleanup: branches_unfinished after {MAX_RETRIES + 1} attempts")


def test_a_join_fired_early_within_the_retry_limit_retries_as_before(system: System) -> None:
    generations = forked(system, lambda: datetime.now(UTC) - timedelta(seconds=DEADLINE + 1))
    with pytest.raises(Retry):
        as_worker(system, CLEANUP, message(generations[2]), retries=MAX_RETRIES - 1)
