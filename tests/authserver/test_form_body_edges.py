"""Reading a form endpoint's body over real loopback HTTP: a client that stops sending is refused
``body_timeout`` once the read's deadline passes; one that disconnects mid-body is audited
``client_disconnected`` with no traceback in the server's log; a percent-encoded byte that is not
UTF-8 is refused ``malformed_form`` as a raw one is. Each refusal is one ``deny`` record."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from orchestrator import _bodies
from tests._raw_http import abandon, reply_to

from .conftest import ORCH, AuthServer, refusal

FORM_HEAD = ("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
ACTIONS = {"/token": "token", "/introspect": "introspect", "/revoke": "revoke",
           "/revocations": "revoke", "/dpop_keys": "dpop_key"}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs (an ASGI traceback is ``Exception in ASGI application``)."""
    handler = _Collect()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def _wait_for_records(server: AuthServer, mark: int, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while len(server.records_since(mark)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("path", list(ACTIONS))
def test_a_body_that_stops_coming_is_refused_at_the_deadline(
        server: AuthServer, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setattr(_bodies, "BODY_DEADLINE_SECONDS", 0.5)
    mark = server.audit_mark()
    started = time.monotonic()
    reply = reply_to(("127.0.0.1", server.settings.auth_port),
                     FORM_HEAD.format(path=path).encode() + b"abc")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert time.monotonic() - started < 4
    assert head.startswith(b"HTTP/1.1 408 "), reply
    answer = json.loads(body)
    assert (answer["error"], answer["reason"]) == ("invalid_request", "body_timeout")
    record = server.assert_denied(mark, "body_timeout")
    assert (record.action, record.performed_by, record.status) == (ACTIONS[path], None, 408)
    assert server.http.get(f"{server.url}/health").json() == {"status": "ok"}


@pytest.mark.parametrize("path", list(ACTIONS))
def test_a_client_that_disconnects_mid_body_is_audited_without_a_traceback(
        server: AuthServer, server_log: list[logging.LogRecord], path: str) -> None:
    mark = server.audit_mark()
    abandon(("127.0.0.1", server.settings.auth_port),
            FORM_HEAD.format(path=path).encode() + b"abc",
            linger=0.2)  # the handler is reading the body when the client goes
    _wait_for_records(server, mark)
    record = server.assert_denied(mark, "client_disconnected")
    assert (record.action, record.performed_by, record.status) == (ACTIONS[path], None, 499)
    time.sleep(0.2)  # whatever the server would log of it, it has logged
    assert [r.getMessage() for r in server_log if r.levelno >= logging.ERROR] == []
    assert server.http.get(f"{server.url}/health").json() == {"status": "ok"}


@pytest.mark.parametrize("body", [b"grant_type=%ff", b"grant_type=%c3%28",
                                  b"token=%ed%a0%80", b"client_assertion_type=%80"])
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke", "/revocations"])
def test_a_percent_encoded_byte_that_is_not_utf8_is_a_malformed_form(
        server: AuthServer, path: str, body: bytes) -> None:
    mark = server.audit_mark()
    answer = server.post(path, content=body,
                         headers={"content-type": "application/x-www-form-urlencoded"})
    refused = refusal(answer, 400, "invalid_request", "malformed_form")
    assert "\ufffd" not in answer.text and "\ufffd" not in refused["error_description"]
    record = server.assert_denied(mark, "malformed_form")
    assert record.action == ACTIONS[path]


def test_percent_encoded_utf8_is_still_read(server: AuthServer) -> None:
    """A percent-encoded character that is UTF-8 is a value like any other."""
    form = {**server.auth(ORCH), "token": "caf\u00e9"}
    assert server.post("/introspect", form).json() == {"active": False}
