"""No garbage gets a 5xx: signed random bodies and mutated payloads are answered 2xx/4xx, JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.ci import WebhookReceiver, build_deployment_event, build_workflow_run_event, sign
from orchestrator.identity import Directory, MemoryRevocationStore
from orchestrator.runs import RunStore

from .conftest import SECRET, Starter, Webhook

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
EVENTS = st.sampled_from(["deployment", "workflow_run", "ping", "push", ""])


def delivery(event: str, body: bytes, n: int) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": f"fuzz-{n}",
            "X-Hub-Signature-256": sign(SECRET, body), "Content-Type": "application/json"}


def assert_answered(status: int, answer: Any) -> None:
    assert status < 500, answer
    assert isinstance(answer, dict)
    assert "reason" in answer or "status" in answer


@FUZZ
@given(event=EVENTS, body=st.binary(max_size=2048))
def test_signed_random_bytes_are_never_a_5xx(webhook: Webhook, event: str, body: bytes) -> None:
    response = webhook.post(delivery(event, body, hash((event, body))), body)
    assert_answered(response.status_code, response.json())


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    return found


def _replace(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    target = payload
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return payload


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["deployment", "workflow_run"]))
def test_mutated_payloads_are_never_a_5xx(webhook: Webhook, data: st.DataObject,
                                          kind: str) -> None:
    build = build_deployment_event if kind == "deployment" else build_workflow_run_event
    _, body = build("sam", "service-x", "prod", "9f2c1e7", pr=3)
    payload = json.loads(body)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(payload)))
        payload = _replace(payload, path, data.draw(JSON_VALUES))
    raw = json.dumps(payload).encode()
    response = webhook.post(delivery(kind, raw, hash(raw)), raw)
    assert_answered(response.status_code, response.json())


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(
    ["X-GitHub-Event", "x-github-delivery", "X-HUB-SIGNATURE-256", "X-Other"]),
    st.text(max_size=80), max_size=4), body=st.binary(max_size=256))
def test_random_headers_are_never_a_5xx(directory: Directory, deliveries: RunStore,
                                        headers: dict[str, str], body: bytes) -> None:
    receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, None, Starter(),
                               deliveries=deliveries)
    status, answer = receiver.receive(headers, body)
    assert_answered(status, answer)


def test_header_names_are_case_insensitive_and_non_ascii_signatures_refused(
        directory: Directory, deliveries: RunStore) -> None:
    starter = Starter()
    receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, None, starter,
                               deliveries=deliveries)
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    lower = {name.lower(): value for name, value in headers.items()}
    bad = {**lower, "x-hub-signature-256": "sha256=\u00e9\u00e9"}
    assert receiver.receive(bad, body) == (401, {
        "error": "unauthorized", "reason": "bad_signature",
        "error_description": "X-Hub-Signature-256 does not match the body"})
    assert receiver.receive(lower, body)[0] == 202
    assert len(starter.events) == 1
