"""A refused root grant is in its run's audit records: the RFC 7523 grant, the federated root
(a provider's token exchanged by the orchestrator) and the in-process issuance record the run id
of the context the orchestrator signed, once its assertion verified (even when the context is
refused: its run id is), so ``audit query --run`` says why a run never started. A run id in an
assertion that did not verify is never recorded."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from orchestrator.authserver import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_JWT
from orchestrator.errors import InvalidGrant
from orchestrator.identity import Context, make_assertion
from tests.federation._idp import HEADERS, IdPServer, keycloak_claims

from .conftest import FEDERATED_SCOPES, INFRABOT, ORCH, AuthServer, refusal


def run_records(srv: AuthServer, ctx: Context) -> list[tuple[str, str, str]]:
    """What ``audit query --run`` shows of the run: its records' action, decision, reason."""
    return [(r.action, r.decision, r.reason) for r in srv.stack.audit.query(run_id=ctx.run_id)]


def test_a_refused_root_grant_is_in_its_runs_records(server: AuthServer) -> None:
    ctx = server.ctx()
    form = {**server.auth(ORCH), **server.grant_form("user:former-employee", ctx)}
    mark = server.audit_mark()
    refusal(server.post("/token", form), 400, "invalid_grant", "unknown_user")
    record = server.assert_denied(mark, "unknown_user", form["assertion"],
                                  form["client_assertion"])
    assert record.run_id == ctx.run_id
    assert run_records(server, ctx) == [("root_grant", "deny", "unknown_user")]


def test_a_replayed_root_grant_is_in_its_runs_records(server: AuthServer) -> None:
    ctx = server.ctx()
    grant = server.grant_form("user:sam", ctx)
    assert server.post("/token", {**server.auth(ORCH), **grant}).status_code == 200
    refusal(server.post("/token", {**server.auth(ORCH), **grant}), 400, "invalid_grant",
            "assertion_replayed")
    assert run_records(server, ctx) == [("root_grant", "allow", "ok"),
                                        ("root_grant", "deny", "assertion_replayed")]


def test_a_run_id_in_an_assertion_that_did_not_verify_is_not_recorded(
        server: AuthServer) -> None:
    ctx = server.ctx()
    form = {**server.auth(ORCH), **server.grant_form("user:sam", ctx,
                                                     key=server.stack.clients[INFRABOT])}
    mark = server.audit_mark()
    refusal(server.post("/token", form), 400, "invalid_grant", "unknown_key")
    assert server.assert_denied(mark, "unknown_key").run_id is None
    assert run_records(server, ctx) == []


def test_a_refused_context_of_a_verified_assertion_is_in_its_runs_records(
        server: AuthServer) -> None:
    ctx = server.ctx()
    forged = Context.model_validate({**ctx.model_dump(), "idp": "https://idp.example",
                                     "idp_subject": "someone"})
    mark = server.audit_mark()
    refusal(server.post("/token", {**server.auth(ORCH), **server.grant_form("user:sam", forged)}),
            400, "invalid_grant", "invalid_context")
    assert server.assert_denied(mark, "invalid_context").run_id == ctx.run_id
    assert run_records(server, ctx) == [("root_grant", "deny", "invalid_context")]


def test_a_refused_root_issued_in_process_is_in_its_runs_records(server: AuthServer) -> None:
    ctx = server.ctx()
    with pytest.raises(InvalidGrant):
        server.stack.auth.issue_root("user:former-employee", ["urn:infra:monitoring:read"], ctx,
                                     INFRABOT, ORCH)
    assert run_records(server, ctx) == [("root_grant", "deny", "unknown_user")]


# -- the federated root ---------------------------------------------------------------------------

def federated_form(srv: AuthServer, idp: IdPServer, ctx: Context, **claims: Any
                   ) -> dict[str, str]:
    key = idp.vendors["keycloak"].keys[0]
    user_token = key.sign(HEADERS["keycloak"](key),
                          keycloak_claims(idp, roles=("infra-deployer",), **claims))
    actor = make_assertion(srv.stack.clients[ORCH], issuer=ORCH, subject=ORCH,
                           audience=f"{srv.url}/token", now=int(time.time()),
                           extra={"ctx": ctx.model_dump()})
    return {**srv.auth(ORCH), "grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": user_token,
            "subject_token_type": TOKEN_TYPE_JWT, "actor_token": actor,
            "actor_token_type": TOKEN_TYPE_JWT, "scope": " ".join(FEDERATED_SCOPES),
            "audience": INFRABOT}


def user_ctx() -> Context:
    return Context(trigger="user_request", environment="staging", repository="acme/service-x",
                   commit="9f2c1e7", run_id=f"run-{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize(("claims", "error", "reason", "in_run"), [
    ({"preferred_username": "mallory"}, "invalid_grant", "unknown_user", True),
    # the user's token refused after the actor token naming the run verified
    ({"aud": "api://another-api"}, "invalid_request", "audience_mismatch", True),
])
def test_a_refused_federated_root_is_in_its_runs_records(
        federated: tuple[AuthServer, IdPServer], claims: dict[str, Any], error: str,
        reason: str, in_run: bool) -> None:
    srv, idp = federated
    ctx = user_ctx()
    form = federated_form(srv, idp, ctx, **claims)
    mark = srv.audit_mark()
    refusal(srv.post("/token", form), 400, error, reason)
    record = srv.assert_denied(mark, reason, form["subject_token"], form["actor_token"],
                               form["client_assertion"])
    assert (record.action, record.run_id) == ("root_grant", ctx.run_id if in_run else None)
    assert run_records(srv, ctx) == ([("root_grant", "deny", reason)] if in_run else [])
