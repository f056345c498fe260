"""Over real loopback HTTP, a raw socket: a body the webhook routes (``/webhooks/github``,
``POST /runs``) never get whole. A client that closes mid-body is recorded as a client abort
(499 ``client_disconnected``), one that stops sending is answered 408 ``body_timeout`` once
:data:`orchestrator._bodies.BODY_DEADLINE_SECONDS` passes; each writes its one deny record, no
500 and no traceback."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator import _bodies
from orchestrator._servers import ServerGroup, bind
from orchestrator.audit import AuditStore, StoredRecord
from orchestrator.ci import RunRequests, WebhookReceiver, create_webhook_app
from orchestrator.identity import Directory, MemoryRevocationStore
from orchestrator.runs import RunStore
from tests._raw_http import Address, abandon, reply_to

from .conftest import SECRET, Starter
from .test_run_start_audit import Tokens


@dataclass
class Served:
    port: int
    audit: AuditStore

    def records(self, wait: float = 5.0, **match: object) -> list[StoredRecord]:
        deadline = time.monotonic() + wait
        while True:
            found = [r for r in self.audit.query(service="webhooks")
                     if all(getattr(r, k) == v for k, v in match.items())]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    @property
    def address(self) -> Address:
        return "127.0.0.1", self.port


@pytest.fixture
def served(tmp_path: Path, directory: Directory) -> Iterator[Served]:
    with AuditStore(tmp_path / "audit.sqlite3", writer="webhooks-test") as audit, \
            contextlib.ExitStack() as stack:
        runs = stack.enter_context(RunStore(tmp_path / "runs.sqlite3"))
        receiver = WebhookReceiver(SECRET, MemoryRevocationStore(), directory, audit,
                                   Starter(), deliveries=runs)
        requests = RunRequests(Tokens(directory), audit,  # type: ignore[arg-type]
                               lambda event, workflow, token: "run-1")
        sock = bind("127.0.0.1", 0)
        group = ServerGroup()
        group.add(create_webhook_app(receiver, requests), sock)
        with group:
            yield Served(sock.getsockname()[1], audit)


def _head(route: str, rid: str) -> bytes:
    return (f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\nX-GitHub-Event: deployment\r\nX-GitHub-Delivery: {rid}\r\n"
            "X-Hub-Signature-256: sha256=00\r\nAuthorization: Bearer idp-token\r\n\r\n").encode()


ROUTES = pytest.mark.parametrize(("route", "action"), [("/webhooks/github", "ci_event"),
                                                       ("/runs", "run_request")])


@ROUTES
def test_a_client_that_disconnects_mid_body_is_recorded_as_a_client_abort(
        served: Served, caplog: pytest.LogCaptureFixture, route: str, action: str) -> None:
    rid = f"abort-{uuid.uuid4().hex}"
    uvicorn_log = logging.getLogger("uvicorn.error")  # where a crash's traceback goes
    uvicorn_log.addHandler(caplog.handler)
    try:
        abandon(served.address, _head(route, rid) + b'{"a')
        [record] = served.records(action=action, reason="client_disconnected")
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert (record.decision, record.status) == ("deny", 499)
    if action == "ci_event":
        assert record.request_id == rid
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@ROUTES
def test_a_body_that_stops_arriving_is_408_body_timeout(
        served: Served, monkeypatch: pytest.MonkeyPatch, route: str, action: str) -> None:
    monkeypatch.setattr(_bodies, "BODY_DEADLINE_SECONDS", 0.3)
    rid = f"slow-{uuid.uuid4().hex}"
    reply = reply_to(served.address, _head(route, rid) + b'{"a')
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
    assert b'"reason":"body_timeout"' in reply
    assert b"\r\nconnection: close\r\n" in reply.lower()
    [record] = served.records(action=action, reason="body_timeout")
    assert (record.decision, record.status) == ("deny", 408)
