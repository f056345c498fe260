"""Replays are recognised by what the signature covers: the event's own id and the body's
digest. ``X-GitHub-Delivery`` is not signed, so a captured body sent again under a new delivery
id must be refused (409 replayed_delivery), audited, and start nothing, also after the replay
cache lost its memory (test_webhook_redelivery.py: the run log on disk remembers the keys); and
once its keys may have been forgotten, by its signed time (409 stale_event)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.ci import (
    DELIVERY_HEADER,
    build_deployment_event,
    build_workflow_run_event,
    encode,
)
from orchestrator.ci._replay import CLOCK_SKEW_SECONDS, FRESH_SECONDS, REPLAY_TTL_SECONDS
from orchestrator.errors import Unavailable
from orchestrator.identity import Directory
from orchestrator.runs import RunStore

from .conftest import SECRET, Webhook, github_time, new_delivery_id, running_webhook


def _assert_replay_refused(webhook: Webhook, headers: dict[str, str], body: bytes) -> None:
    replay = webhook.post(headers, body)
    assert replay.status_code == 409, replay.text
    assert replay.json() == {"error": "conflict", "reason": "replayed_delivery",
                             "error_description": "this event was already received: the same "
                                                  "event id or the same signed body"}
    denied = [r for r in webhook.records() if r.request_id == headers[DELIVERY_HEADER]]
    assert [(r.decision, r.reason, r.status) for r in denied] == [
        ("deny", "replayed_delivery", 409)]


@pytest.mark.parametrize("build", [build_deployment_event, build_workflow_run_event])
def test_the_same_signed_body_under_a_new_delivery_id_starts_nothing(
        webhook: Webhook, build: Any) -> None:
    headers, body = build("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    assert webhook.post(headers, body).status_code == 202
    _assert_replay_refused(webhook, new_delivery_id(headers), body)
    assert len(webhook.starter.events) == 1


def test_the_same_deployment_id_in_another_body_is_a_replay(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    assert webhook.post(headers, body).status_code == 202
    payload = json.loads(body)
    payload["deployment"]["environment"] = "staging"
    _assert_replay_refused(webhook, *encode("deployment", payload, secret=SECRET))
    assert len(webhook.starter.events) == 1


def test_a_new_attempt_of_a_workflow_run_is_a_new_event(webhook: Webhook) -> None:
    _, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7")
    payload = json.loads(body)
    assert webhook.post(*encode("workflow_run", payload, secret=SECRET)).status_code == 202
    payload["workflow_run"]["run_attempt"] = 2
    assert webhook.post(*encode("workflow_run", payload, secret=SECRET)).status_code == 202
    _assert_replay_refused(webhook, *encode("workflow_run", payload, secret=SECRET))
    assert len(webhook.starter.events) == 2


@pytest.mark.parametrize(("kind", "field", "value"), [
    ("deployment", "id", None), ("deployment", "id", 0), ("deployment", "id", "7"),
    ("deployment", "id", True), ("deployment", "id", 2**63),
    ("workflow_run", "id", None), ("workflow_run", "id", -1),
    ("workflow_run", "run_attempt", 0), ("workflow_run", "run_attempt", 1.0),
])
def test_an_event_without_a_usable_id_is_malformed_and_starts_nothing(
        webhook: Webhook, kind: str, field: str, value: Any) -> None:
    build = build_deployment_event if kind == "deployment" else build_workflow_run_event
    _, body = build("sam", "service-x", "prod", "9f2c1e7")
    payload = json.loads(body)
    if value is None:
        del payload[kind][field]
    else:
        payload[kind][field] = value
    response = webhook.post(*encode(kind, payload, secret=SECRET))
    assert response.status_code == 400
    assert (response.json()["reason"], response.json()["field"]) == (
        "malformed_event", f"{kind}.{field}")
    assert webhook.starter.events == []
    [record] = webhook.records()
    assert (record.decision, record.reason, record.status) == ("deny", "malformed_event", 400)


def test_a_missing_run_attempt_is_the_first(webhook: Webhook) -> None:
    _, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7")
    payload = json.loads(body)
    del payload["workflow_run"]["run_attempt"]
    assert webhook.post(*encode("workflow_run", payload, secret=SECRET)).status_code == 202
    payload["workflow_run"]["run_attempt"] = 1
    _assert_replay_refused(webhook, *encode("workflow_run", payload, secret=SECRET))


class FailingSecondKey(RunStore):
    """A run log that records the first key of a delivery, then cannot be written."""

    failures = 1

    def claim_delivery(self, delivery_id: str, *, ttl: int,
                       run_id: str | None = None) -> bool:
        if delivery_id.startswith("sha256:") and self.failures:
            self.failures -= 1
            raise Unavailable("run log cannot be used", reason="run_log_unavailable")
        return super().claim_delivery(delivery_id, ttl=ttl, run_id=run_id)


def test_a_half_claimed_delivery_is_released_whole(tmp_path: Path, directory: Directory) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    with running_webhook(tmp_path, directory,
                         runs=FailingSecondKey(tmp_path / "runs.sqlite3")) as webhook:
        first = webhook.post(headers, body)
        assert (first.status_code, first.json()["reason"]) == (503, "replay_cache_unavailable")
        assert webhook.starter.events == []
        again = webhook.post(new_delivery_id(headers), body)  # the sender tries again
        assert again.status_code == 202, again.text
        assert len(webhook.starter.events) == 1


@pytest.mark.parametrize("build", [build_deployment_event, build_workflow_run_event])
def test_an_event_older_than_the_replay_window_is_stale_and_starts_nothing(
        webhook: Webhook, build: Any) -> None:
    # Its keys may already be forgotten: it cannot be told from a replay.
    headers, body = build("sam", "service-x", "prod", "9f2c1e7", secret=SECRET,
                          at=webhook.now - FRESH_SECONDS - 1)
    response = webhook.post(headers, body)
    assert (response.status_code, response.json()["error"], response.json()["reason"]) == (
        409, "conflict", "stale_event")
    assert webhook.starter.events == []
    [record] = webhook.records()
    assert (record.decision, record.reason, record.status) == ("deny", "stale_event", 409)
    assert (record.on_behalf_of, record.context["environment"]) == ("user:sam", "prod")
    fresh = build("sam", "service-x", "prod", "9f2c1e7", secret=SECRET,
                  at=webhook.now - FRESH_SECONDS + 60)
    assert webhook.post(*fresh).status_code == 202


def test_the_window_is_shorter_than_the_keys_are_kept() -> None:
    assert FRESH_SECONDS + 2 * CLOCK_SKEW_SECONDS <= REPLAY_TTL_SECONDS


@pytest.mark.parametrize(("kind", "value"), [
    ("deployment", None), ("deployment", "yesterday"), ("deployment", "2026-01-01T00:00:00"),
    ("deployment", 1_764_400_000), ("workflow_run", None), ("workflow_run", "ahead"),
])
def test_an_event_without_a_usable_signed_time_is_malformed(
        webhook: Webhook, kind: str, value: Any) -> None:
    build = build_deployment_event if kind == "deployment" else build_workflow_run_event
    payload = json.loads(build("sam", "service-x", "prod", "9f2c1e7")[1])
    field = "created_at" if kind == "deployment" else "updated_at"
    if value is None:
        del payload[kind][field]
    elif value == "ahead":  # beyond the allowed clock skew
        payload[kind][field] = github_time(webhook.now + CLOCK_SKEW_SECONDS + 60)
    else:
        payload[kind][field] = value
    response = webhook.post(*encode(kind, payload, secret=SECRET))
    assert (response.status_code, response.json()["reason"], response.json()["field"]) == (
        400, "malformed_event", f"{kind}.{field}")
    assert webhook.starter.events == []
