"""A delivery starts one run, whatever fails while the orchestrator starts it: the run is
recorded running before its first hop is published, so a run log that fails there has published
nothing and the sender's redelivery starts the run once; once the hop may have gone out, the
delivery is answered accepted (and kept claimed) unless the run could be ended first."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError
from structlog.testing import capture_logs

from orchestrator.ci import WebhookReceiver, build_deployment_event
from orchestrator.errors import Unavailable
from orchestrator.identity import Directory, MemoryRevocationStore
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import RunStore
from orchestrator.workflows import load_workflows

from .conftest import SECRET

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
DOWN = Unavailable("database is locked", reason="run_log_unavailable")


class FlakyLog(RunStore):
    """A run log whose ``mark_running`` / ``finish`` fail the given number of times."""

    running_failures = 0
    finish_failures = 0

    def mark_running(self, run_id: str) -> bool:
        if self.running_failures:
            self.running_failures -= 1
            raise DOWN
        return super().mark_running(run_id)

    def finish(self, run_id: str, status: str, reason: str, *,
               agent: str | None = None) -> bool:
        if self.finish_failures:
            self.finish_failures -= 1
            raise DOWN
        return super().finish(run_id, status, reason, agent=agent)


@dataclass
class Broker:
    """The orchestrator's dispatch: records each first hop with its run's status when it was
    published; raises ``error`` (after publishing when ``published``) while it is set."""

    runs: RunStore
    published: list[tuple[str, str]] = field(default_factory=list)
    error: Exception | None = None
    publishes_anyway: bool = False

    def __call__(self, agent: str, run_id: str, *_: str) -> None:
        if self.error is None or self.publishes_anyway:
            run = self.runs.get(run_id)
            assert run is not None
            self.published.append((run_id, run.status))
        if self.error is not None:
            raise self.error


@dataclass
class Serve:
    runs: FlakyLog
    broker: Broker
    receiver: WebhookReceiver

    def deliver(self) -> tuple[int, dict[str, object]]:
        """The same deployment delivery each time (as the sender's redelivery sends it)."""
        return self.receiver.receive(*DELIVERY)


DELIVERY = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=124, secret=SECRET)


@pytest.fixture
def serve(tmp_path: Path, directory: Directory) -> Iterator[Serve]:
    with FlakyLog(tmp_path / "runs.sqlite3") as runs:
        broker = Broker(runs)
        orchestrator = Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                                    auth=None, dispatch=broker,  # type: ignore[arg-type]
                                    static_token="static-token")
        receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, None,
                                   lambda event, *, run_id: orchestrator.start(
                                       event, mode="static", run_id=run_id),
                                   deliveries=runs)
        yield Serve(runs, broker, receiver)


def test_a_run_log_blip_before_the_first_hop_publishes_nothing_and_the_redelivery_runs_once(
        serve: Serve) -> None:
    serve.runs.running_failures = 1
    with capture_logs() as logs:
        status, body = serve.deliver()
    assert (status, body["reason"]) == (503, "run_log_unavailable")
    assert serve.broker.published == []
    [answered] = [e for e in logs if e["event"] == "webhook_answered"]
    assert "INFRABOT_DATABASE_URL" in answered["hint"]
    [first] = serve.runs.list()
    assert (first.status, first.reason) == ("failed", "not started: run_log_unavailable")

    status, body = serve.deliver()  # the sender's redelivery: nothing was started
    assert (status, body["status"]) == (202, "accepted")
    assert serve.broker.published == [(body["run_id"], "running")]  # running when published
    assert serve.deliver()[1]["reason"] == "replayed_delivery"
    assert len(serve.broker.published) == 1


def test_a_publish_error_ends_the_run_then_releases_the_delivery(serve: Serve) -> None:
    serve.broker.error = OperationalError("connection refused")
    status, body = serve.deliver()
    assert (status, body["reason"]) == (503, "broker_unavailable")
    [first] = serve.runs.list()
    assert (first.status, first.reason) == ("failed", "broker unavailable (OperationalError)")
    serve.broker.error = None
    status, body = serve.deliver()
    assert status == 202 and serve.broker.published == [(body["run_id"], "running")]


def test_a_publish_in_doubt_whose_run_cannot_be_ended_is_accepted_once(serve: Serve) -> None:
    """The broker took the hop but its answer was lost, and the run log then refuses to end the
    run: a redelivery would start a second run beside one whose hop may be running."""
    serve.broker.error, serve.broker.publishes_anyway = OperationalError("timed out"), True
    serve.runs.finish_failures = 1
    status, body = serve.deliver()
    assert (status, body["status"]) == (202, "accepted")
    [run] = serve.runs.list()
    assert (run.run_id, run.status) == (body["run_id"], "running")  # the deadline ends it
    serve.broker.error = None
    assert serve.deliver()[1]["reason"] == "replayed_delivery"
    assert serve.broker.published == [(run.run_id, "running")]


def test_a_publish_error_after_a_hop_of_the_run_ended_it_is_accepted(serve: Serve) -> None:
    """The hop went out and its run ended before the error came back: the run started."""
    serve.broker.publishes_anyway = True
    serve.broker.error = OperationalError("timed out")
    ended = serve.runs.finish
    serve.runs.finish = lambda run_id, status, reason, **kw: (  # type: ignore[method-assign]
        ended(run_id, "succeeded", "a hop ended it"), ended(run_id, status, reason, **kw))[1]
    status, body = serve.deliver()
    assert (status, body["status"]) == (202, "accepted")
    [run] = serve.runs.list()
    assert (run.status, run.reason) == ("succeeded", "a hop ended it")
