"""``orchestrator.client.AuthClient`` against the real server: every error answer comes back as
the project's exception with the server's reason; transport faults and 5xx are ``Unavailable``."""

from __future__ import annotations

import socket

import httpx
import pytest

from orchestrator import errors
from orchestrator.client import AuthClient, raise_for_error

from .conftest import ARGOCD, CLEANUP, INFRABOT, ORCH, AuthServer


def test_refusals_become_the_matching_exceptions(server: AuthServer) -> None:
    root, _, h2, _ = server.chain()
    cases = [
        (lambda: server.clients[CLEANUP].exchange(h2, resource=server.aws,
                                                  scope="urn:infra:secrets:manage"),
         errors.InvalidScope, "scope_not_grantable"),
        (lambda: server.clients[INFRABOT].exchange(root, audience=CLEANUP),
         errors.InvalidTarget, "handoff_not_allowed"),
        (lambda: server.clients[ARGOCD].exchange(root, audience=CLEANUP),
         errors.InvalidRequest, "may_act_mismatch"),
        (lambda: server.clients[ORCH].root_token("user:former-employee",
                                                 ["urn:infra:monitoring:read"], server.ctx(),
                                                 INFRABOT),
         errors.InvalidGrant, "unknown_user"),
        (lambda: server.clients[INFRABOT].revoke_by(user="user:sam"),
         errors.UnauthorizedClient, "client_not_trusted"),
    ]
    for call, exc_type, reason in cases:
        with pytest.raises(exc_type) as caught:
            call()
        assert type(caught.value) is exc_type
        assert caught.value.reason == reason
        assert "eyJ" not in str(caught.value)


def test_a_client_with_the_wrong_key_is_invalid_client(server: AuthServer) -> None:
    with (AuthClient(server.url, INFRABOT, server.stack.clients[ARGOCD]) as impostor,
          pytest.raises(errors.InvalidClient) as caught):
        impostor.introspect("x")
    assert caught.value.reason == "unknown_key"  # its kid is no key of agent:infrabot


def test_every_call_uses_a_fresh_assertion(server: AuthServer) -> None:
    token = server.root()["access_token"]
    client = server.clients[INFRABOT]
    assert client.introspect(token)["active"] and client.introspect(token)["active"]
    assert client.assertion() != client.assertion()


def test_an_unreachable_server_is_unavailable(server: AuthServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with (AuthClient(f"http://127.0.0.1:{port}", ORCH, server.stack.clients[ORCH],
                         timeout=1.0) as client,
              pytest.raises(errors.Unavailable) as caught):
            client.introspect("x")
    assert caught.value.reason == "authserver_unavailable"


@pytest.mark.parametrize(("status", "body", "exc_type", "reason"), [
    (502, b"<html>bad gateway</html>", errors.Unavailable, "http_502"),
    (503, b'{"error": "temporarily_unavailable", "reason": "revocation_unavailable"}',
     errors.Unavailable, "revocation_unavailable"),
    (400, b"not json", errors.InvalidRequest, "http_400"),
    (400, b'["a list"]', errors.InvalidRequest, "http_400"),
    (400, b'{"error": "invalid_target"}', errors.InvalidTarget, "invalid_target"),
    (401, b'{"error": "invalid_client", "reason": "unknown_client"}', errors.InvalidClient,
     "unknown_client"),
    (400, b'{"error": "made_up_code", "reason": "x"}', errors.InvalidRequest, "x"),
])
def test_raise_for_error(status: int, body: bytes, exc_type: type[Exception],
                         reason: str) -> None:
    response = httpx.Response(status, content=body)
    with pytest.raises(exc_type) as caught:
        raise_for_error(response)
    assert type(caught.value) is exc_type
    assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_success_is_not_an_error() -> None:
    raise_for_error(httpx.Response(200, content=b""))
