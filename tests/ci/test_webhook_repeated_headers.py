"""A header that must come once, sent twice, over real HTTP: never resolved first- or last-wins
(``X-GitHub-Event: deployment`` then ``ping`` was answered ``pong``), refused 400
``repeated_header`` naming it, with its one deny record."""

from __future__ import annotations

import pytest

from orchestrator.ci import build_deployment_event, encode, sign

from .conftest import SECRET, Webhook


def _repeated(header: str, second: str) -> tuple[list[tuple[str, str]], bytes]:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=42,
                                           secret=SECRET)
    return [*headers.items(), (header, second)], body


@pytest.mark.parametrize(("header", "second"), [
    ("X-GitHub-Event", "ping"),
    ("X-GitHub-Event", "deployment"),  # even the same value: which one counts is not asked
    ("X-GitHub-Delivery", "another-delivery"),
    ("x-hub-signature-256", "sha256=" + "0" * 64),
])
def test_a_repeated_header_is_refused_and_recorded(webhook: Webhook, header: str,
                                                   second: str) -> None:
    headers, body = _repeated(header, second)
    response = webhook.http.post("/webhooks/github", headers=headers, content=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["error"], answer["reason"]) == ("invalid_request", "repeated_header")
    assert answer["field"].lower() == header.lower()
    assert webhook.starter.events == []
    [record] = webhook.records()
    assert (record.decision, record.reason, record.status) == ("deny", "repeated_header", 400)
    if header == "X-GitHub-Delivery":  # neither id is the delivery's: the record names none
        assert record.request_id is None


def test_a_repeated_signature_before_a_ping_is_still_refused(webhook: Webhook) -> None:
    headers, body = encode("ping", {"zen": "Keep it logically awesome."}, secret=SECRET)
    sent = [*headers.items(), ("X-Hub-Signature-256", sign(SECRET, body))]
    response = webhook.http.post("/webhooks/github", headers=sent, content=body)
    assert (response.status_code, response.json()["reason"]) == (400, "repeated_header")


def test_headers_sent_once_each_are_taken(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=42,
                                           secret=SECRET)
    response = webhook.http.post("/webhooks/github", headers=list(headers.items()), content=body)
    assert response.status_code == 202, response.text
