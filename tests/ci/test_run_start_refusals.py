"""A start refused after its run was created never leaves the run ``pending``: every refusal
before the first hop is published ends the run ``failed`` with ``not started: <reason>`` (the
root grant's own outage: ``root grant: <reason>``), and a refusal that configuration decides
(static-token mode off) is made before any run is created, answered 422, not a retryable 503
whose every redelivery would add another run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.ci import CIEvent, WebhookReceiver, build_deployment_event
from orchestrator.errors import ConfigError, InvalidScope, Unavailable
from orchestrator.identity import Context, Directory, MemoryRevocationStore
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import EventDetail
from orchestrator.workflows import load_workflows

from .conftest import SECRET
from .test_run_start_faults import DELIVERY, DOWN, WORKFLOWS, Broker, FlakyLog

AUTH_DOWN = Unavailable("connection refused", reason="authserver_unavailable")
EVENT = CIEvent(delivery_id="d-static-off", event_type="deployment", user="user:sam",
                sender_login="sam", repository="acme/service-x", service="service-x",
                environment="prod", commit="9f2c1e7", trigger="ci_pipeline", pr=124)


class BrittleLog(FlakyLog):
    """A run log that refuses to append events of the kinds in ``failing`` (each once)."""

    failing: set[str]

    def add_event(self, run_id: str, agent: str | None, detail: EventDetail) -> Any:
        if detail.kind in self.failing:
            self.failing.discard(detail.kind)
            raise DOWN
        return super().add_event(run_id, agent, detail)


@dataclass
class Auth:
    """The orchestrator's authorization client: grants what is asked, or raises ``error``;
    ``garbled``: answers without a scope (what a bug would hand back). ``revoked``: the tokens
    revoked (RFC 7009), in order; ``revoke_error`` is raised by a revocation instead."""

    error: Exception | None = None
    garbled: bool = False
    revoked: list[str] = field(default_factory=list)
    revoke_error: Exception | None = None

    def revoke(self, token: str) -> None:
        if self.revoke_error is not None:
            raise self.revoke_error
        self.revoked.append(token)

    def root_token(self, user: str, needed: list[str], ctx: Context,
                   first_agent: str) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        if self.garbled:
            return {"access_token": "not-a-jwt"}
        return {"access_token": "not-a-jwt", "scope": " ".join(needed), "expires_in": 300}


@dataclass
class Serve:
    runs: BrittleLog
    broker: Broker
    auth: Auth
    orchestrator: Orchestrator
    receiver: WebhookReceiver

    def deliver(self) -> tuple[int, dict[str, object]]:
        return self.receiver.receive(*DELIVERY)


def _serve(runs: BrittleLog, directory: Directory, mode: str,
           static_token: str | None) -> Serve:
    broker, auth = Broker(runs), Auth()
    orchestrator = Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                                auth=auth, dispatch=broker,  # type: ignore[arg-type]
                                static_token=static_token)
    receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, None,
                               lambda event, *, run_id: orchestrator.start(
                                   event, mode=mode, run_id=run_id),
                               deliveries=runs)
    return Serve(runs, broker, auth, orchestrator, receiver)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[BrittleLog]:
    with BrittleLog(tmp_path / "runs.sqlite3") as runs:
        runs.failing = set()
        yield runs


@pytest.fixture
def delegated(log: BrittleLog, directory: Directory) -> Serve:
    return _serve(log, directory, "delegated", None)


def test_static_mode_off_is_refused_before_a_run_is_created(log: BrittleLog,
                                                            directory: Directory) -> None:
    serve = _serve(log, directory, "static", None)
    status, body = serve.deliver()
    assert (status, body["error"], body["reason"]) == (422, "unprocessable", "static_mode_off")
    assert body["error_description"] == ("static-token mode is not enabled: "
                                         "INFRABOT_STATIC_TOKEN is not set")
    assert log.list() == [] and serve.broker.published == []
    assert serve.deliver()[1]["reason"] == "replayed_delivery"  # not a 503 to retry forever
    assert log.list() == []


def test_static_mode_off_raises_a_config_error_and_records_nothing(
        log: BrittleLog, directory: Directory) -> None:
    serve = _serve(log, directory, "static", None)
    with pytest.raises(ConfigError) as caught:
        serve.orchestrator.start(EVENT, mode="static", run_id="run-static-off")
    assert (caught.value.reason, caught.value.message) == (
        "static_mode_off", "static-token mode is not enabled: INFRABOT_STATIC_TOKEN is not set")
    assert log.get("run-static-off") is None


@pytest.mark.parametrize("mode", ["static", "delegated"])
def test_a_started_event_the_run_log_refuses_ends_the_run_failed(
        log: BrittleLog, directory: Directory, mode: str) -> None:
    serve = _serve(log, directory, mode, "static-token")
    log.failing = {"started"}
    status, body = serve.deliver()
    assert (status, body["reason"]) == (503, "run_log_unavailable")
    [first] = log.list()
    assert (first.status, first.reason) == ("failed", "not started: run_log_unavailable")
    assert serve.broker.published == []
    status, body = serve.deliver()  # the redelivery starts it once
    assert (status, body["status"]) == (202, "accepted")
    assert serve.broker.published == [(body["run_id"], "running")]


def test_a_root_grant_the_run_log_cannot_record_ends_the_run_failed(delegated: Serve) -> None:
    delegated.runs.failing = {"root_granted"}
    status, body = delegated.deliver()
    assert (status, body["reason"]) == (503, "run_log_unavailable")
    [run] = delegated.runs.list()
    assert (run.status, run.reason) == ("failed", "not started: run_log_unavailable")
    assert delegated.broker.published == []
    assert delegated.auth.revoked == ["not-a-jwt"]  # minted, never handed off: revoked


def test_a_root_denial_the_run_log_cannot_record_ends_the_run_failed(delegated: Serve) -> None:
    delegated.auth.error = InvalidScope("nothing grantable", reason="scope_not_grantable")
    delegated.runs.failing = {"root_denied"}
    status, body = delegated.deliver()
    assert (status, body["reason"]) == (503, "run_log_unavailable")
    [run] = delegated.runs.list()
    assert (run.status, run.reason) == ("failed", "not started: run_log_unavailable")
    status, body = delegated.deliver()  # the redelivery is denied, and that is recorded
    assert (status, body["status"]) == (202, "accepted")
    denied = delegated.runs.get(str(body["run_id"]))
    assert denied is not None and (denied.status, denied.reason) == (
        "denied", "root grant: invalid_scope (scope_not_grantable)")


def test_a_denial_whose_end_the_run_log_refuses_ends_the_run_failed(delegated: Serve) -> None:
    delegated.auth.error = InvalidScope("nothing grantable", reason="scope_not_grantable")
    delegated.runs.finish_failures = 1  # the "denied" end; the "failed" one is then recorded
    status, body = delegated.deliver()
    assert (status, body["reason"]) == (503, "run_log_unavailable")
    [run] = delegated.runs.list()
    assert (run.status, run.reason) == ("failed", "not started: run_log_unavailable")


def test_an_unreachable_authserver_and_a_run_log_that_cannot_end_the_run_says_so(
        delegated: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root grant's outage is what the sender is told; the run log's refusal to end the run
    is logged (the run deadline ends it), not raised in its place."""
    monkeypatch.setattr("orchestrator.orchestration.time.sleep", lambda _: None)
    delegated.auth.error = AUTH_DOWN
    delegated.runs.finish_failures = 1
    with capture_logs() as logs:
        status, body = delegated.deliver()
    assert (status, body["reason"]) == (503, "authserver_unavailable")
    [unsettled] = [e for e in logs if e["event"] == "run_unsettled"]
    assert (unsettled["reason"], unsettled["error"]) == (
        "root grant: authserver_unavailable", "run_log_unavailable")
    delegated.auth.error = None
    status, body = delegated.deliver()
    assert (status, body["status"]) == (202, "accepted")


def test_an_unreachable_authserver_ends_the_run_once(delegated: Serve,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.orchestration.time.sleep", lambda _: None)
    delegated.auth.error = AUTH_DOWN
    with capture_logs() as logs:
        status, body = delegated.deliver()
    assert (status, body["reason"]) == (503, "authserver_unavailable")
    [run] = delegated.runs.list()
    assert (run.status, run.reason) == ("failed", "root grant: authserver_unavailable")
    assert [e["event"] for e in logs if e["event"].startswith("run_")] == []


def test_a_crash_before_the_first_hop_ends_the_run_failed(delegated: Serve) -> None:
    delegated.auth.garbled = True  # no scope: a KeyError in the orchestrator
    with capture_logs():
        status, body = delegated.deliver()
    assert (status, body["reason"]) == (500, "internal_error")
    [run] = delegated.runs.list()
    assert (run.status, run.reason) == ("failed", "not started: internal_error")
    assert delegated.broker.published == []



def test_an_event_without_the_pr_its_workflow_needs_is_refused_before_a_run_is_created(
        log: BrittleLog, directory: Directory) -> None:
    """post-deploy reads and comments on the deployment's pull request: a deployment event
    without ``payload.pr`` is refused up front, not started to fail at its PR step."""
    serve = _serve(log, directory, "delegated", None)
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7",
                                           secret=SECRET)
    status, answer = serve.receiver.receive(headers, body)
    assert (status, answer["error"], answer["reason"]) == (422, "unprocessable", "missing_pr")
    assert answer["error_description"] == (
        "post-deploy needs the event's pull request number (a deployment's payload.pr), and "
        "this event has none")
    assert log.list() == [] and serve.broker.published == []

