"""Every refusal at ``/revoke``, ``/revocations`` and ``/introspect`` is one audit record, as
at ``/token`` and ``/dpop_keys``: a ``deny`` with the answer's reason and status, by the client
once it is authenticated, naming the token's chain once the token is verified (a non-holder's
attempt to revoke is the probe the trail must show); never the token or the assertion."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.audit import StoredRecord
from orchestrator.identity import CLIENT_ASSERTION_TYPE

from .conftest import CLEANUP, INFRABOT, ORCH, AuthServer, refusal, unverified_claims


def denied(srv: AuthServer, answer: httpx.Response, status: int, error: str, reason: str,
           mark: int, *sent: str, action: str, client: str | None) -> StoredRecord:
    """The refusal answered, and its one deny record: ``action`` by ``client``, the status."""
    refusal(answer, status, error, reason)
    record = srv.assert_denied(mark, reason, *sent)
    assert (record.action, record.performed_by, record.status) == (action, client, status)
    return record


def test_a_non_holder_revoking_a_token_is_audited_with_its_chain(server: AuthServer) -> None:
    root = server.root()["access_token"]
    claims = unverified_claims(root)
    form = {**server.auth(CLEANUP), "token": root}
    mark = server.audit_mark()
    record = denied(server, server.post("/revoke", form), 400, "unauthorized_client",
                    "not_token_holder", mark, root, form["client_assertion"], action="revoke",
                    client=CLEANUP)
    assert record.resource == f"jti:{claims['jti']}"
    assert (record.jti, record.on_behalf_of, record.run_id) == (
        claims["jti"], "user:sam", claims["ctx"]["run_id"])


def test_an_unsupported_token_type_hint_at_revoke_is_audited(server: AuthServer) -> None:
    token = server.root()["access_token"]
    form = {**server.auth(ORCH), "token": token, "token_type_hint": "id_token"}
    mark = server.audit_mark()
    record = denied(server, server.post("/revoke", form), 400, "unsupported_token_type",
                    "unsupported_token_type", mark, token, action="revoke", client=ORCH)
    assert record.jti is None and record.resource == ""


@pytest.mark.parametrize(("path", "action"), [("/revoke", "revoke"),
                                              ("/introspect", "introspect")])
def test_a_request_without_a_token_is_audited(server: AuthServer, path: str,
                                              action: str) -> None:
    mark = server.audit_mark()
    denied(server, server.post(path, server.auth(ORCH)), 400, "invalid_request",
           "missing_parameter", mark, action=action, client=ORCH)


@pytest.mark.parametrize("path", ["/revoke", "/revocations", "/introspect"])
def test_an_unauthenticated_request_is_audited(server: AuthServer, path: str) -> None:
    token = server.root()["access_token"]
    action = "introspect" if path == "/introspect" else "revoke"
    mark = server.audit_mark()
    denied(server, server.post(path, {"token": token, "user": "user:sam"}), 401,
           "invalid_client", "client_authentication_missing", mark, token, action=action,
           client=None)


@pytest.mark.parametrize("path", ["/revoke", "/revocations", "/introspect"])
def test_a_forged_assertion_is_audited(server: AuthServer, path: str) -> None:
    assertion = server.assertion(ORCH, key=server.stack.clients[INFRABOT])
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion,
            "user": "user:sam", "token": "opaque"}
    action = "introspect" if path == "/introspect" else "revoke"
    mark = server.audit_mark()
    denied(server, server.post(path, form), 401, "invalid_client", "unknown_key", mark,
           assertion, action=action, client=None)


@pytest.mark.parametrize("path", ["/revoke", "/revocations", "/introspect"])
def test_a_body_that_is_not_a_form_is_audited(server: AuthServer, path: str) -> None:
    action = "introspect" if path == "/introspect" else "revoke"
    mark = server.audit_mark()
    answer = server.post(path, content=b"{}", headers={"content-type": "application/json"})
    denied(server, answer, 400, "invalid_request", "unsupported_content_type", mark,
           action=action, client=None)


def test_an_agent_calling_revocations_is_audited(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), "user": "user:sam"}
    mark = server.audit_mark()
    denied(server, server.post("/revocations", form), 400, "unauthorized_client",
           "client_not_trusted", mark, form["client_assertion"], action="revoke",
           client=INFRABOT)


def test_revocations_without_one_target_is_audited(server: AuthServer) -> None:
    form = {**server.auth(ORCH), "user": "user:sam", "run_id": "run-x"}
    mark = server.audit_mark()
    denied(server, server.post("/revocations", form), 400, "invalid_request",
           "target_required", mark, action="revoke", client=ORCH)


@pytest.mark.parametrize("path", ["/revoke", "/revocations", "/introspect"])
def test_an_unreachable_registry_is_audited(registry_down: AuthServer, path: str) -> None:
    server = registry_down
    token = server.mint(user_version=0, registry_epoch="epoch-unreached")
    form = {**server.auth(ORCH), "token": token, "user": "user:sam"}
    action = "introspect" if path == "/introspect" else "revoke"
    mark = server.audit_mark()
    denied(server, server.post(path, form), 503, "temporarily_unavailable",
           "revocation_unavailable", mark, token, form["client_assertion"], action=action,
           client=None)
