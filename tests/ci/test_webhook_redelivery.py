"""A delivery that could not start a run for a transient reason may be delivered again: the
sender's redelivery (same X-GitHub-Delivery) is accepted, not refused as a replay."""

from __future__ import annotations

from orchestrator.ci import build_deployment_event
from orchestrator.errors import ConfigError, Unavailable

from .conftest import SECRET, Webhook


def test_a_transient_failure_releases_the_delivery(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    webhook.starter.error = Unavailable("the broker cannot be reached",
                                        reason="broker_unavailable")
    first = webhook.post(headers, body)
    assert first.status_code == 503
    assert first.json()["reason"] == "broker_unavailable"
    webhook.starter.error = None
    again = webhook.post(headers, body)
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "accepted"
    assert len(webhook.starter.events) == 1
    replay = webhook.post(headers, body)
    assert replay.status_code == 409
    assert replay.json()["reason"] == "replayed_delivery"


def test_a_permanent_failure_keeps_the_delivery_claimed(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    webhook.starter.error = ConfigError("no workflow", reason="no_matching_workflow")
    assert webhook.post(headers, body).status_code == 422
    webhook.starter.error = None
    replay = webhook.post(headers, body)
    assert replay.status_code == 409
    assert replay.json()["reason"] == "replayed_delivery"
