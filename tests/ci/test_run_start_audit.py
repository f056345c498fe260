"""A start that fails after its run was created is audited under that run: the receiver's deny
record (``webhooks`` / ``ci_event``, and ``run_request`` at ``POST /runs``) carries the run id
the orchestrator's error names, so the run the log ended ``failed`` joins the refusal in the
audit trail. The answer's body stays the refusal shape, without the run. A start refused
before any run is created names none."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kombu.exceptions import OperationalError
from structlog.testing import capture_logs

from orchestrator.audit import AuditStore
from orchestrator.ci import DELIVERY_HEADER, RunRequests, WebhookReceiver
from orchestrator.errors import InternalError, Unavailable
from orchestrator.identity import (
    Context,
    Directory,
    FederatedIdentity,
    IdentityProvider,
    MemoryRevocationStore,
)
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import Run, RunStore
from orchestrator.workflows import load_workflows

from .conftest import SECRET, Webhook
from .test_run_start_faults import DELIVERY, WORKFLOWS, Broker
from .test_run_start_refusals import AUTH_DOWN, EVENT, Auth, BrittleLog

REFUSAL = {"error", "error_description", "reason"}
ISSUER = "https://idp.example/realms/acme"


class UserAuth(Auth):
    """:class:`Auth` for a run rooted in a person's own token (``POST /runs``)."""

    def user_root_token(self, token: str, needed: list[str], ctx: Context,
                        first_agent: str) -> dict[str, Any]:
        return self.root_token("", needed, ctx, first_agent)


@dataclass
class Tokens:
    """The receiver's ``UserTokens``: every bearer token is sam's, from the one provider."""

    directory: Directory

    def verify(self, token: object) -> tuple[IdentityProvider, FederatedIdentity]:
        provider = IdentityProvider(issuer=ISSUER, jwks_url=f"{ISSUER}/jwks",
                                    audience="infrabot", profile="keycloak")
        return provider, FederatedIdentity(user="user:sam", issuer=ISSUER, subject="sam",
                                           asserted=frozenset())


@dataclass
class Serve:
    runs: BrittleLog
    broker: Broker
    auth: UserAuth
    orchestrator: Orchestrator
    audit: AuditStore
    receiver: WebhookReceiver
    requests: RunRequests

    def the_run(self) -> Run:
        [run] = self.runs.list()
        return run


def receiving(directory: Directory, audit: AuditStore, runs: RunStore,
              orchestrator: Orchestrator) -> tuple[WebhookReceiver, RunRequests]:
    """The webhook receiver and ``POST /runs`` of ``orchestrator``, as serve wires them."""
    receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, audit,
                               orchestrator.start, deliveries=runs)
    requests = RunRequests(
        Tokens(directory), audit,  # type: ignore[arg-type]
        lambda event, workflow, token: orchestrator.start(event, workflow=workflow,
                                                          user_token=token))
    return receiver, requests


@pytest.fixture
def serve(tmp_path: Path, directory: Directory) -> Iterator[Serve]:
    with BrittleLog(tmp_path / "runs.sqlite3") as runs, \
            AuditStore(tmp_path / "audit.sqlite3", writer="webhooks-test") as audit:
        runs.failing = set()
        broker, auth = Broker(runs), UserAuth()
        orchestrator = Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                                    auth=auth, dispatch=broker,  # type: ignore[arg-type]
                                    static_token="static-token")
        receiver, requests = receiving(directory, audit, runs, orchestrator)
        yield Serve(runs, broker, auth, orchestrator, audit, receiver, requests)


def _broker_down(serve: Serve) -> None:
    serve.broker.error = OperationalError("connection refused")


def _started_not_recorded(serve: Serve) -> None:
    serve.runs.failing = {"started"}


def _running_not_recorded(serve: Serve) -> None:
    serve.runs.running_failures = 1


def _root_grant_not_recorded(serve: Serve) -> None:
    serve.runs.failing = {"root_granted"}  # the token minted, its record refused


def _authserver_down(serve: Serve) -> None:
    serve.auth.error = AUTH_DOWN


def _a_bug(serve: Serve) -> None:
    serve.auth.garbled = True  # no scope: a KeyError in the orchestrator


# What fails after the run is created, the answer, how the run ended, and whether a root token
# had been minted by then (the start revokes it: RFC 7009).
FAILURES = [
    (_broker_down, 503, "temporarily_unavailable", "broker_unavailable",
     "broker unavailable (OperationalError)", True),
    (_started_not_recorded, 503, "temporarily_unavailable", "run_log_unavailable",
     "not started: run_log_unavailable", False),
    (_running_not_recorded, 503, "temporarily_unavailable", "run_log_unavailable",
     "not started: run_log_unavailable", True),
    (_authserver_down, 503, "temporarily_unavailable", "authserver_unavailable",
     "root grant: authserver_unavailable", False),
    (_root_grant_not_recorded, 503, "temporarily_unavailable", "run_log_unavailable",
     "not started: run_log_unavailable", True),
    (_a_bug, 500, "server_error", "internal_error", "not started: internal_error", True),
]


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.orchestration.time.sleep", lambda _: None)


@pytest.mark.parametrize(("fail", "status", "error", "reason", "ended", "minted"), FAILURES)
def test_a_delivery_whose_start_failed_after_the_run_was_created_is_denied_under_the_run(
        serve: Serve, fail: Callable[[Serve], None], status: int, error: str, reason: str,
        ended: str, minted: bool) -> None:
    fail(serve)
    with capture_logs():
        answer_status, body = serve.receiver.receive(*DELIVERY)
    assert (answer_status, body["error"], body["reason"]) == (status, error, reason)
    assert set(body) == REFUSAL  # the body names no run: a retry is what it asks for
    run = serve.the_run()
    assert (run.status, run.reason) == ("failed", ended)
    [record] = serve.audit.query(service="webhooks")
    assert (record.action, record.decision, record.reason, record.status) == (
        "ci_event", "deny", reason, status)
    assert (record.run_id, record.request_id) == (run.run_id, DELIVERY[0][DELIVERY_HEADER])
    assert [r.seq for r in serve.audit.query(run_id=run.run_id)] == [record.seq]
    assert serve.auth.revoked == (["not-a-jwt"] if minted else [])


@pytest.mark.parametrize(("fail", "status", "error", "reason", "ended", "minted"), FAILURES)
def test_a_run_request_whose_start_failed_after_the_run_was_created_is_denied_under_the_run(
        serve: Serve, fail: Callable[[Serve], None], status: int, error: str, reason: str,
        ended: str, minted: bool) -> None:
    fail(serve)
    body_in = (b'{"workflow": "manual-check", "parameters": {"environment": "staging", '
               b'"repository": "acme/service-x", "commit": "9f2c1e7", "pr": 124}}')
    with capture_logs():
        answer_status, body = serve.requests.receive("Bearer an-idp-token", body_in)
    assert (answer_status, body["error"], body["reason"]) == (status, error, reason)
    assert set(body) == REFUSAL
    run = serve.the_run()
    assert (run.status, run.reason) == ("failed", ended)
    [record] = serve.audit.query(service="webhooks")
    assert (record.action, record.decision, record.reason, record.status, record.run_id) == (
        "run_request", "deny", reason, status, run.run_id)
    assert serve.auth.revoked == (["not-a-jwt"] if minted else [])


def test_a_run_the_log_cannot_end_either_is_still_named(serve: Serve) -> None:
    """The root grant's outage, and the run log then refuses to end the run: the run stays
    pending for its deadline, and the refusal is still audited under it."""
    serve.auth.error, serve.runs.finish_failures = AUTH_DOWN, 1
    with capture_logs():
        status, body = serve.receiver.receive(*DELIVERY)
    assert (status, body["reason"]) == (503, "authserver_unavailable")
    run = serve.the_run()
    assert run.status == "pending"
    [record] = serve.audit.query(service="webhooks")
    assert (record.decision, record.run_id) == ("deny", run.run_id)


def test_a_start_refused_before_any_run_is_created_names_none(serve: Serve,
                                                             directory: Directory) -> None:
    serve.orchestrator.static_token = None
    receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, serve.audit,
                               lambda event, *, run_id: serve.orchestrator.start(
                                   event, mode="static", run_id=run_id),
                               deliveries=serve.runs)
    status, body = receiver.receive(*DELIVERY)
    assert (status, body["reason"]) == (422, "static_mode_off")
    assert serve.runs.list() == []
    [record] = serve.audit.query(service="webhooks")
    assert (record.decision, record.reason, record.run_id) == ("deny", "static_mode_off", None)


def test_the_orchestrator_raises_a_bug_as_an_internal_error_naming_the_run(
        serve: Serve) -> None:
    serve.auth.garbled = True
    with pytest.raises(InternalError) as caught:
        serve.orchestrator.start(EVENT, run_id="run-crashed")
    assert (caught.value.reason, caught.value.run_id) == ("internal_error", "run-crashed")
    assert isinstance(caught.value.__cause__, KeyError)
    run = serve.runs.get("run-crashed")
    assert run is not None and (run.status, run.reason) == (
        "failed", "not started: internal_error")


@pytest.mark.parametrize(("error", "status"), [
    (Unavailable("the broker cannot be reached", reason="broker_unavailable",
                 run_id="run-7"), 503),
    (InternalError("the run could not be started", run_id="run-7"), 500),
])
def test_the_receiver_records_the_run_its_start_error_names(
        webhook: Webhook, error: Exception, status: int) -> None:
    webhook.starter.error = error
    with capture_logs():
        response = webhook.post(*DELIVERY)
    assert response.status_code == status and set(response.json()) == REFUSAL
    [record] = webhook.records()
    assert (record.decision, record.status, record.run_id) == ("deny", status, "run-7")


def test_a_start_error_naming_no_run_records_none(webhook: Webhook) -> None:
    webhook.starter.error = Unavailable("down", reason="broker_unavailable")
    assert webhook.post(*DELIVERY).status_code == 503
    [record] = webhook.records()
    assert record.run_id is None


def test_a_root_token_that_cannot_be_revoked_leaves_the_refusal_as_it_was(serve: Serve) -> None:
    """The authorization server refuses (or cannot take) the revocation of a start's unused
    root token: logged, never its token; the delivery is refused as it would have been."""
    _broker_down(serve)
    serve.auth.revoke_error = AUTH_DOWN
    with capture_logs() as logs:
        status, body = serve.receiver.receive(*DELIVERY)
    assert (status, body["reason"]) == (503, "broker_unavailable")
    run = serve.the_run()
    assert [(e["event"], e["run_id"], e["reason"]) for e in logs
            if e["event"] == "root_token_unrevoked"] == [
        ("root_token_unrevoked", run.run_id, AUTH_DOWN.reason)]
    assert "not-a-jwt" not in repr(logs)
    assert (run.status, run.reason) == ("failed", "broker unavailable (OperationalError)")
