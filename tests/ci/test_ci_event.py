"""The CIEvent model and the public surface of ``orchestrator.ci``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator import ci
from orchestrator.ci import CIEvent, Ignored, MalformedEvent, parse_event
from orchestrator.identity import Directory

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"
BASE: dict[str, Any] = {
    "delivery_id": "d-1", "event_type": "deployment", "user": "user:sam", "sender_login": "sam",
    "repository": "acme/service-x", "service": "service-x", "environment": "prod",
    "commit": "9f2c1e7", "trigger": "ci_pipeline", "pr": None, "ref": "main",
}


def test_a_ci_event_is_frozen_and_its_context_is_what_a_token_carries() -> None:
    event = CIEvent(**BASE)
    assert event.context == {"trigger": "ci_pipeline", "environment": "prod",
                             "repository": "acme/service-x", "commit": "9f2c1e7"}
    with pytest.raises(ValidationError):
        event.environment = "staging"  # type: ignore[misc]


@pytest.mark.parametrize(("name", "value"), [
    ("commit", "9f2c1e"), ("commit", "g" * 7), ("commit", "a" * 41),
    ("user", "sam"), ("trigger", "cron"), ("event_type", "push"), ("pr", 0), ("pr", "7"),
    ("repository", "acme"), ("environment", "prod env"), ("ref", "main branch"),
    ("delivery_id", "a" * 200), ("service", JWT), ("ref", f"refs/{JWT}"),
])
def test_invalid_fields_are_refused_without_echoing_them(name: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        CIEvent(**{**BASE, name: value})
    assert JWT not in str(caught.value)


def test_commits_keep_their_length_and_are_lower_cased() -> None:
    assert CIEvent(**{**BASE, "commit": "ABCDEF1"}).commit == "abcdef1"
    assert CIEvent(**{**BASE, "commit": "A" * 40}).commit == "a" * 40


def test_parse_event_refuses_an_unknown_event_type(directory: Directory) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_event("push", "d-1", {}, directory)
    assert (caught.value.reason, caught.value.field) == ("malformed_event", "X-GitHub-Event")
    assert parse_event("workflow_run", "d-1", {"workflow_run": {"conclusion": "failure"}},
                       directory) == Ignored("conclusion_not_success")


def test_the_public_surface_is_pinned() -> None:
    assert sorted(ci.__all__) == sorted([
        "DELIVERY_HEADER", "EVENT_HEADER", "MAX_BODY_BYTES", "REPLAY_TTL_SECONDS", "ROUTE",
        "RUNS_ROUTE", "SIGNATURE_HEADER", "CIEvent", "RunParameters", "RunRequest",
        "RunRequests", "EventType", "Ignored", "MalformedEvent", "Trigger",
        "WebhookReceiver", "build_deployment_event", "build_workflow_run_event",
        "create_webhook_app", "encode", "parse_event", "ping_event", "sign", "webhook_key",
        "with_webhook_secret",
    ])
