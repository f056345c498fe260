"""A body that never arrives whole, over real loopback HTTP: a client that closes the connection
mid-body is recorded as a client abort (499 ``client_disconnected``, never a 500 or a
traceback), and one that stops sending is answered 408 ``body_timeout`` once the body deadline
passes (:data:`orchestrator._bodies.BODY_DEADLINE_SECONDS`), both audited."""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import urlsplit

from orchestrator import _bodies
from tests._raw_http import Address, abandon, reply_to

HEAD = ("POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\nX-Request-Id: {rid}\r\nAuthorization: Bearer {token}\r\n\r\n")


def _address(url: str) -> Address:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _record(stack, rid: str, wait: float = 5.0):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = [r for r in stack.audit.query(service="datadog") if r.request_id == rid]
        if found:
            return found
        time.sleep(0.02)
    return []


def test_a_client_that_disconnects_mid_body_is_a_client_abort(stack, http, caplog):
    rid = f"abort-{uuid.uuid4().hex}"
    caplog.set_level(logging.INFO, logger="mock_services")
    abandon(_address(stack.urls["datadog"]),
            HEAD.format(rid=rid, token=stack.token("datadog")).encode() + b'{"t')
    [record] = _record(stack, rid)
    assert (record.decision, record.reason, record.status) == ("deny", "client_disconnected",
                                                               499)
    assert not [r for r in caplog.records if r.getMessage() == "service_internal_error"]
    assert stack.call(http, "datadog.monitor.read", {"monitor_id": 1001}).status_code == 200


def test_a_body_that_stops_arriving_is_answered_408_body_timeout(stack, monkeypatch):
    monkeypatch.setattr(_bodies, "BODY_DEADLINE_SECONDS", 0.3)
    rid = f"slow-{uuid.uuid4().hex}"
    reply = reply_to(_address(stack.urls["datadog"]),
                     HEAD.format(rid=rid, token=stack.token("datadog")).encode() + b'{"t')
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
    assert b'"reason":"body_timeout"' in reply
    assert b"\r\nconnection: close\r\n" in reply.lower()
    [record] = _record(stack, rid)
    assert (record.decision, record.reason, record.status) == ("deny", "body_timeout", 408)


def test_a_body_sent_slowly_but_within_the_deadline_is_taken(stack, http, monkeypatch):
    monkeypatch.setattr(_bodies, "BODY_DEADLINE_SECONDS", 5.0)
    token = stack.token("datadog")
    body = b'{"title": "slow", "text": "x", "tags": ["service:service-x", "env:prod"]}'

    def chunks():
        for i in range(0, len(body), 20):
            time.sleep(0.05)
            yield body[i:i + 20]

    response = http.post(stack.urls["datadog"] + "/api/v1/events", content=chunks(),
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
