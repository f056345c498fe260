"""Every refusal of the webhook receiver, with its exact status and reason, and its audit record."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from orchestrator.ci import build_deployment_event, encode, sign
from orchestrator.identity import Directory
from orchestrator.registry import RedisRevocationStore

from .conftest import SECRET, Webhook, running_webhook

Delivery = tuple[dict[str, str], bytes]


def deployment(**changes: Any) -> Delivery:
    """A signed deployment delivery for sam, with payload fields replaced (None deletes)."""
    _, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=42)
    payload = json.loads(body)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = payload
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return encode("deployment", payload, secret=SECRET)


def without(header: str) -> Delivery:
    headers, body = deployment()
    del headers[header]
    return headers, body


def with_header(header: str, value: str) -> Delivery:
    headers, body = deployment()
    return {**headers, header: value}, body


def signed(body: bytes, event: str = "deployment") -> Delivery:
    headers, _ = deployment()
    return {**headers, "X-GitHub-Event": event, "X-Hub-Signature-256": sign(SECRET, body)}, body


def signed_for_another_body() -> Delivery:
    headers, body = deployment()
    _, other = deployment(deployment__environment="staging")
    return {**headers, "X-Hub-Signature-256": sign(SECRET, other)}, body


def registry(client: redis.Redis) -> RedisRevocationStore:
    """A registry on a client the test owns (and closes). The cast works around the identity
    package's ``_RedisLike`` protocol not matching redis-py's stubs."""
    return RedisRevocationStore(cast(Any, client))


def signed_with_another_secret() -> Delivery:
    headers, body = deployment()
    return {**headers, "X-Hub-Signature-256": sign(b"another secret", body)}, body


ERROR_OF = {400: "invalid_request", 401: "unauthorized", 403: "forbidden",
            413: "payload_too_large"}
REFUSALS: dict[str, tuple[Callable[[], Delivery], int, str]] = {
    "missing signature": (lambda: without("X-Hub-Signature-256"), 401, "missing_signature"),
    "empty signature": (lambda: with_header("X-Hub-Signature-256", ""), 401,
                        "missing_signature"),
    "bad signature": (lambda: with_header("X-Hub-Signature-256", "sha256=" + "0" * 64), 401,
                      "bad_signature"),
    "sha1 style signature": (lambda: with_header("X-Hub-Signature-256", "sha1=abc"), 401,
                             "bad_signature"),
    "non-hex signature": (lambda: with_header("X-Hub-Signature-256", "sha256=" + "z" * 64), 401,
                          "bad_signature"),
    "signature for another body": (signed_for_another_body, 401, "bad_signature"),
    "signature with another secret": (signed_with_another_secret, 401, "bad_signature"),
    "missing event": (lambda: without("X-GitHub-Event"), 400, "unsupported_event"),
    "unsupported event": (lambda: with_header("X-GitHub-Event", "push"), 400,
                          "unsupported_event"),
    "missing delivery": (lambda: without("X-GitHub-Delivery"), 400, "missing_delivery_id"),
    "delivery id not an id": (lambda: with_header("X-GitHub-Delivery", "a b/../c"), 400,
                              "invalid_delivery_id"),
    "malformed json": (lambda: signed(b'{"action": "created",'), 400, "malformed_event"),
    "not utf-8": (lambda: signed(b"\xff\xfe{}"), 400, "malformed_event"),
    "json array": (lambda: signed(b"[1, 2, 3]"), 400, "malformed_event"),
    "deeply nested json": (lambda: signed(b"[" * 100_000 + b"]" * 100_000), 400,
                           "malformed_event"),
    "missing sha": (lambda: deployment(deployment__sha=None), 400, "malformed_event"),
    # a signed deployment_status body (its sender made the status) sent as a deployment
    "another event's body": (lambda: deployment(deployment_status={"state": "success"}), 400,
                             "malformed_event"),
    "unknown user": (lambda: deployment(sender__login="mallory"), 403, "unknown_user"),
    "bot sender": (lambda: deployment(sender__login="dependabot[bot]"), 403, "unknown_user"),
    "disabled user": (lambda: deployment(sender__login="former-employee"), 403,
                      "user_disabled"),
    "too large": (lambda: signed(json.dumps({"pad": "x" * (256 * 1024)}).encode()), 413,
                  "payload_too_large"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refusal_has_its_status_reason_and_one_deny_record(
        webhook: Webhook, case: str) -> None:
    make, status, reason = REFUSALS[case]
    headers, body = make()
    response = webhook.post(headers, body)

    assert response.status_code == status
    answer = response.json()
    assert (answer["error"], answer["reason"]) == (ERROR_OF[status], reason)
    assert answer["error_description"]
    # one error shape, as every other server answers (no "message" any more)
    assert set(answer) == {"error", "error_description", "reason"} | (
        {"field"} if reason == "malformed_event" else set())
    assert webhook.starter.events == []
    [record] = webhook.records()
    assert (record.service, record.action, record.decision, record.reason, record.status) == (
        "webhooks", "ci_event", "deny", reason, status)
    assert record.run_id is None
    signature = headers.get("X-Hub-Signature-256", "")
    stored = json.dumps(record.content())
    assert not signature.removeprefix("sha256=") or signature.removeprefix("sha256=") not in stored


@pytest.mark.parametrize(("changes", "field"), [
    ({"deployment__sha": None}, "deployment.sha"),
    ({"deployment__sha": "not-hex!"}, "deployment.sha"),
    ({"deployment__sha": "abc12"}, "deployment.sha"),
    ({"deployment__environment": None}, "deployment.environment"),
    ({"deployment__environment": "prod; rm -rf"}, "deployment.environment"),
    ({"deployment": None}, "deployment"),
    ({"deployment": "created"}, "deployment"),
    ({"deployment__payload": [1]}, "deployment.payload"),
    ({"deployment__payload": "{not json"}, "deployment.payload"),
    ({"deployment__payload__pr": "42"}, "deployment.payload.pr"),
    ({"deployment__payload__pr": True}, "deployment.payload.pr"),
    ({"deployment__payload__trigger": "robot"}, "deployment.payload.trigger"),
    ({"deployment__payload__service": 7}, "deployment.payload.service"),
    ({"repository": None}, "repository.full_name"),
    ({"repository__full_name": "no-slash"}, "repository.full_name"),
    ({"sender": None}, "sender.login"),
    ({"sender__login": ""}, "sender.login"),
    ({"sender__login": "sam smith"}, "sender.login"),
])
def test_a_malformed_event_names_the_wrong_field(
        webhook: Webhook, changes: dict[str, Any], field: str) -> None:
    response = webhook.post(*deployment(**changes))
    assert response.status_code == 400
    assert response.json()["reason"] == "malformed_event"
    assert response.json()["field"] == field


def test_a_workflow_run_without_a_readable_environment_is_malformed(webhook: Webhook) -> None:
    payload = {"action": "completed",
               "workflow_run": {"id": 1, "head_sha": "9f2c1e7", "event": "push",
                                "conclusion": "success", "name": "Build"},
               "repository": {"full_name": "acme/service-x"}, "sender": {"login": "sam"}}
    response = webhook.post(*encode("workflow_run", payload, secret=SECRET))
    assert (response.status_code, response.json()["field"]) == (400, "workflow_run.name")


def test_a_replayed_delivery_is_refused(webhook: Webhook) -> None:
    headers, body = deployment()
    assert webhook.post(headers, body).status_code == 202
    replay = webhook.post(headers, body)

    assert replay.status_code == 409
    assert replay.json()["reason"] == "replayed_delivery"
    assert len(webhook.starter.events) == 1
    accepted, refused = webhook.records()
    assert (accepted.decision, refused.decision, refused.reason) == (
        "allow", "deny", "replayed_delivery")
    assert refused.request_id == headers["X-GitHub-Delivery"]


def test_a_refused_known_event_names_its_repository_and_user(webhook: Webhook) -> None:
    webhook.post(*deployment(sender__login="former-employee"))
    [record] = webhook.records()
    assert record.resource == "github:acme/service-x"
    assert record.on_behalf_of == "user:former-employee"


def test_an_unreachable_replay_cache_fails_closed(tmp_path: Path, directory: Directory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5,
                         socket_timeout=0.5)
    try:
        with running_webhook(tmp_path, directory, registry(client)) as webhook:
            response = webhook.post(*deployment())
            assert response.status_code == 503
            assert response.json()["reason"] == "replay_cache_unavailable"
            assert webhook.starter.events == []
            [record] = webhook.records()
            assert (record.decision, record.reason, record.status) == (
                "deny", "replay_cache_unavailable", 503)
    finally:
        client.close()


@pytest.mark.redis
def test_replays_are_refused_across_receivers_sharing_redis(
        tmp_path: Path, directory: Directory, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    headers, body = deployment()
    try:
        with running_webhook(tmp_path / "a", directory, registry(client)) as first:
            assert first.post(headers, body).status_code == 202
        with running_webhook(tmp_path / "b", directory, registry(client)) as second:
            assert second.post(headers, body).status_code == 409
    finally:
        client.close()
