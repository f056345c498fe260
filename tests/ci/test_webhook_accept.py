"""Deliveries that start runs (or are acknowledged and ignored), over real HTTP on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.ci import (
    CIEvent,
    build_deployment_event,
    build_workflow_run_event,
    encode,
    ping_event,
    sign,
)
from orchestrator.errors import ConfigError, InvalidScope, Unavailable

from .conftest import SECRET, Webhook, github_time

FULL_SHA = "9F2C1E7A0B1C2D3E4F5061728394A5B6C7D8E9F0"


def test_a_deployment_event_starts_a_run_with_its_ci_event(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=42,
                                           secret=SECRET)
    response = webhook.post(headers, body)

    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "run_id": "run-1"}
    assert webhook.starter.events == [CIEvent(
        delivery_id=headers["X-GitHub-Delivery"], event_type="deployment", user="user:sam",
        sender_login="sam", repository="acme/service-x", service="service-x",
        environment="prod", commit="9f2c1e7", trigger="ci_pipeline", pr=42, ref="main")]


def test_an_accepted_event_leaves_one_allow_record_with_the_run_id(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    webhook.post(headers, body)

    [record] = webhook.records()
    assert (record.service, record.action, record.decision, record.reason) == (
        "webhooks", "ci_event", "allow", "accepted")
    assert (record.resource, record.run_id, record.request_id, record.status) == (
        "github:acme/service-x", "run-1", headers["X-GitHub-Delivery"], 202)
    assert record.on_behalf_of == "user:sam"
    assert record.context == {"trigger": "ci_pipeline", "environment": "prod",
                              "repository": "acme/service-x", "commit": "9f2c1e7"}
    assert record.time == datetime.fromtimestamp(webhook.now, UTC)
    stored = json.dumps(record.to_json())
    assert headers["X-Hub-Signature-256"].removeprefix("sha256=") not in stored
    assert '"sender"' not in stored and "infrabot-ci[bot]" not in stored


def test_deployment_payload_defaults_and_string_payloads(webhook: Webhook) -> None:
    payload = {
        "action": "created",
        "deployment": {"id": 1, "sha": FULL_SHA, "ref": "refs/heads/main",
                       "environment": "staging", "creator": {"login": "sam"},
                       "payload": json.dumps({"trigger": "manual"}),
                       "created_at": github_time(webhook.now)},
        "repository": {"full_name": "acme/billing-api"},
        "sender": {"login": "Sam"},
    }
    response = webhook.post(*encode("deployment", payload, secret=SECRET))

    assert response.status_code == 202
    [event] = webhook.starter.events
    assert (event.user, event.service, event.environment, event.trigger) == (
        "user:sam", "billing-api", "staging", "manual")
    assert (event.commit, event.pr, event.ref) == (FULL_SHA.lower(), None, "refs/heads/main")


def test_a_deployment_without_a_trigger_is_manual_unless_a_ci_app_created_it(
        webhook: Webhook) -> None:
    payload: dict[str, Any] = {
        "action": "created",
        "deployment": {"id": 1, "sha": "9f2c1e7", "environment": "prod", "payload": {},
                       "created_at": github_time(webhook.now)},
        "repository": {"full_name": "acme/service-x"},
        "sender": {"login": "sam"},
    }
    assert webhook.post(*encode("deployment", payload, secret=SECRET)).status_code == 202
    payload["deployment"] = {**payload["deployment"], "id": 2,
                             "creator": {"login": "InfraBot-CI[bot]"}}
    assert webhook.post(*encode("deployment", payload, secret=SECRET)).status_code == 202
    assert [e.trigger for e in webhook.starter.events] == ["manual", "ci_pipeline"]


def test_a_successful_workflow_run_starts_a_ci_pipeline_run(webhook: Webhook) -> None:
    headers, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7", pr=7,
                                             secret=SECRET)
    response = webhook.post(headers, body)

    assert response.status_code == 202 and response.json()["status"] == "accepted"
    [event] = webhook.starter.events
    assert (event.event_type, event.user, event.environment, event.trigger) == (
        "workflow_run", "user:sam", "prod", "ci_pipeline")
    assert (event.commit, event.service, event.pr) == ("9f2c1e7", "service-x", 7)


def test_a_dispatched_workflow_run_is_manual(webhook: Webhook) -> None:
    headers, body = build_workflow_run_event("sam", "service-x", "staging", "9f2c1e7",
                                             trigger="manual", secret=SECRET)
    assert webhook.post(headers, body).status_code == 202
    assert webhook.starter.events[0].trigger == "manual"


def test_an_explicit_environment_wins_over_the_workflow_name(webhook: Webhook) -> None:
    _, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7",
                                       name="Release pipeline")
    payload = json.loads(body)
    payload["workflow_run"]["environment"] = "canary"
    response = webhook.post(*encode("workflow_run", payload, secret=SECRET))
    assert response.status_code == 202
    assert webhook.starter.events[0].environment == "canary"


@pytest.mark.parametrize("conclusion", ["failure", "cancelled", "skipped", None])
def test_an_unsuccessful_workflow_run_is_acknowledged_and_ignored(
        webhook: Webhook, conclusion: str | None) -> None:
    _, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7")
    payload = json.loads(body)
    payload["workflow_run"]["conclusion"] = conclusion
    response = webhook.post(*encode("workflow_run", payload, secret=SECRET))

    assert response.status_code == 202
    assert response.json() == {"status": "ignored", "reason": "conclusion_not_success"}
    assert webhook.starter.events == []
    [record] = webhook.records()
    assert (record.decision, record.reason, record.run_id) == (
        "allow", "conclusion_not_success", None)


def test_other_actions_are_ignored(webhook: Webhook) -> None:
    _, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7")
    payload = {**json.loads(body), "action": "requested"}
    response = webhook.post(*encode("workflow_run", payload, secret=SECRET))
    assert response.json() == {"status": "ignored", "reason": "action_not_completed"}
    _, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7")
    payload = {**json.loads(body), "action": "deleted"}
    response = webhook.post(*encode("deployment", payload, secret=SECRET))
    assert response.json() == {"status": "ignored", "reason": "action_not_created"}
    assert webhook.starter.events == []


def test_a_ping_is_answered_pong(webhook: Webhook) -> None:
    response = webhook.post(*ping_event(secret=SECRET))
    assert (response.status_code, response.json()) == (200, {"status": "pong"})
    [record] = webhook.records()
    assert (record.decision, record.reason, record.resource) == ("allow", "pong", "github:unknown")


@pytest.mark.parametrize(("error", "status", "code", "reason"), [
    (InvalidScope("nothing grantable", reason="scope_not_grantable"), 422, "unprocessable",
     "scope_not_grantable"),
    (ConfigError("no workflow for this event", reason="no_workflow"), 422, "unprocessable",
     "no_workflow"),
    (Unavailable("auth server down", reason="auth_unreachable"), 503, "temporarily_unavailable",
     "auth_unreachable"),
    (RuntimeError("a bug"), 500, "server_error", "internal_error"),
])
def test_a_run_that_cannot_start_answers_with_its_reason(
        webhook: Webhook, error: Exception, status: int, code: str, reason: str) -> None:
    webhook.starter.error = error
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    response = webhook.post(headers, body)

    assert response.status_code == status
    answer = response.json()
    assert (answer["error"], answer["reason"]) == (code, reason)
    assert set(answer) == {"error", "error_description", "reason"}
    assert "a bug" not in response.text
    [record] = webhook.records()
    assert (record.decision, record.reason, record.status) == ("deny", reason, status)


def test_health_unknown_routes_and_methods_answer_json(webhook: Webhook) -> None:
    assert webhook.http.get("/health").json() == {"status": "ok"}
    missing = webhook.http.get("/nowhere")
    assert (missing.status_code, missing.json()) == (404, {
        "error": "not_found", "error_description": "Not Found", "reason": "not_found"})
    wrong = webhook.http.get("/webhooks/github")
    assert (wrong.status_code, wrong.json()) == (405, {
        "error": "method_not_allowed", "error_description": "Method Not Allowed",
        "reason": "method_not_allowed"})


def test_a_crash_outside_the_receiver_still_answers_the_error_shape(
        webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit store failing in a way the receiver does not expect: JSON, not plain text."""
    def broken(_record: object) -> None:
        raise RuntimeError("a bug in the store")

    monkeypatch.setattr(webhook.audit, "append", broken)
    response = webhook.post(*build_deployment_event("sam", "service-x", "prod", "9f2c1e7",
                                                    secret=SECRET))
    assert (response.status_code, response.json()) == (500, {
        "error": "server_error", "error_description": "internal error",
        "reason": "internal_error"})
    assert "a bug" not in response.text


def test_openapi_documents_the_route_and_its_answers(webhook: Webhook) -> None:
    spec = webhook.http.get("/openapi.json").json()
    operation = spec["paths"]["/webhooks/github"]["post"]
    assert {"200", "202", "400", "401", "403", "409", "413", "422", "503"} <= set(
        operation["responses"])
    assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Refusal"}
    assert {p["name"] for p in operation["parameters"]} == {
        "X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"}
    assert "requestBody" in operation
    assert {"Accepted", "Ignored", "Pong", "Refusal", "Health"} <= set(
        spec["components"]["schemas"])


def test_sign_is_the_github_hmac() -> None:
    assert sign(b"It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    first, _ = build_deployment_event("sam", "service-x", "prod", "9f2c1e7")
    second, _ = build_deployment_event("sam", "service-x", "prod", "9f2c1e7")
    assert first["X-GitHub-Delivery"] != second["X-GitHub-Delivery"]
    assert "X-Hub-Signature-256" not in first
