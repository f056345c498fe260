"""A copy of a branch's last hop redelivered after it returned (its acknowledgement lost: a
broker connection dropped, a worker killed between the return and the ack) does not publish the
join while the other branch still runs: the join goes out when the run log shows every branch
ended. (Celery's chord, which counted the fan-out's branches before, counted such a copy twice
and fired the join early.)

The join's hop still checks every branch ended before it acts. A join delivered before then
waits for them until its run's deadline, not for the 7 retries of a transient fault (no branch's
end would deliver it again, so a join that gave up would fail a healthy run).

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
from hops.test_hop_resume import queued
from hops.test_hop_task_faults import as_worker
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
    (its hop done), the scanner's still runs. The generation of each branch's hand-off."""
    with RunStore(system.runtime.runs.target, clock=started) as runs:
        runs.create(RUN, workflow="post-deploy", event=SAM_DEPLOYS, mode="static")
    system.runtime.runs.mark_running(RUN)
    journal = HopJournal(system.runtime.runs)
    generations = journal.send_together(RUN, [ARGOCD, SCANNER])
    assert generations is not None
    assert journal.published_together(RUN, dict(zip([ARGOCD, SCANNER], generations,
                                                     strict=True)))
    assert journal.receive(RUN, ARGOCD, generations[0])
    system.runtime.runs.mark_hop_done(RUN, ARGOCD, f"{RUN}.argocd")
    return generations


def join_sent(system: System) -> int:
    """The join's hand-off published anyway (as a fault might): its generation."""
    journal = HopJournal(system.runtime.runs)
    generation = journal.send(RUN, CLEANUP)
    assert generation is not None
    journal.sent(RUN, CLEANUP, generation)
    return generation


JOIN = {"join_token": "static-token", "join_scope": ""}  # the join's hand-off a branch carries


def message(generation: int) -> list[object]:
    return [RUN, "post-deploy", "static-token", "", "static", generation]


def test_a_branchs_last_hop_redelivered_does_not_publish_the_join_early(
        system: System) -> None:
    generations = forked(system, lambda: datetime.now(UTC))
    # ArgoCD's last hop redelivered after it returned: a duplicate, and the scanner still runs
    redelivered = as_worker(system, ARGOCD, message(generations[0]), JOIN)
    assert redelivered["status"] == "duplicate"
    assert queued(system, "cleanup") == 0
    assert HopJournal(system.runtime.runs).delivery(RUN, CLEANUP) is None
    # The scanner's hop recorded done, and its worker died before publishing the join: the
    # redelivered copy publishes it, and a copy of that nothing more.
    assert HopJournal(system.runtime.runs).receive(RUN, SCANNER, generations[1])
    system.runtime.runs.mark_hop_done(RUN, SCANNER, f"{RUN}.scanner")
    assert as_worker(system, SCANNER, message(generations[1]), JOIN)["status"] == "duplicate"
    assert as_worker(system, SCANNER, message(generations[1]), JOIN)["status"] == "duplicate"
    assert queued(system, "cleanup") == 1
    delivery = HopJournal(system.runtime.runs).delivery(RUN, CLEANUP)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("sent", 1)


def test_a_join_delivered_early_waits_past_the_retry_limit(system: System) -> None:
    forked(system, lambda: datetime.now(UTC))
    # A join delivered while the scanner still runs waits, past the retries of a fault
    with pytest.raises(Retry):
        as_worker(system, CLEANUP, message(join_sent(system)), {"waited": MAX_RETRIES + 5},
                  retries=MAX_RETRIES + 5)
    run = system.runtime.runs.get(RUN)
    assert run is not None and run.status == "running"
    [retrying] = [e.detail for e in run.events if e.kind == "retrying"]
    assert (retrying.reason, retrying.attempt) == ("branches_unfinished", MAX_RETRIES + 6)
    assert retrying.in_seconds <= 8


def test_past_the_runs_deadline_the_join_ends_it_failed(system: System) -> None:
    forked(system, lambda: datetime.now(UTC) - timedelta(seconds=DEADLINE + 1))
    summary = as_worker(system, CLEANUP, message(join_sent(system)), {"waited": MAX_RETRIES},
                        retries=MAX_RETRIES)
    assert summary["status"] == "failed"
    run = system.runtime.runs.get(RUN)
    assert run is not None
    assert (run.status, run.reason) == (
        "failed", f"agent:cleanup: branches_unfinished after {MAX_RETRIES + 1} attempts")


def test_a_join_fired_early_within_the_retry_limit_retries_as_before(system: System) -> None:
    forked(system, lambda: datetime.now(UTC) - timedelta(seconds=DEADLINE + 1))
    with pytest.raises(Retry):
        as_worker(system, CLEANUP, message(join_sent(system)), {"waited": MAX_RETRIES - 1},
                  retries=MAX_RETRIES - 1)
