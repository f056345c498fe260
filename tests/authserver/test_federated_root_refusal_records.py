"""Every way the federated root (a user's provider token exchanged by the orchestrator, the
run's ``ctx`` in the actor token it signs) is refused, and the exact audit record it leaves. As
for the RFC 7523 grant: once the orchestrator authenticated and its actor token verified (it is
verified before the user's token), the record names the run its ``ctx`` names, whatever is
refused next (the user's token, the user, a context field); before, it names none."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from orchestrator.authserver import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_JWT
from orchestrator.identity import SigningKey, make_assertion
from tests.federation._idp import HEADERS, IdPServer, keycloak_claims

from .conftest import FEDERATED_SCOPES, INFRABOT, ORCH, AuthServer, refusal


def run_ctx(**fields: Any) -> dict[str, Any]:
    ctx = {"trigger": "user_request", "environment": "staging", "repository": "acme/service-x",
           "commit": "9f2c1e7", "run_id": f"run-{uuid.uuid4().hex[:12]}", **fields}
    return {k: v for k, v in ctx.items() if v is not None}


def form(srv: AuthServer, idp: IdPServer, ctx: dict[str, Any], *,
         actor_key: SigningKey | None = None, **claims: Any) -> dict[str, str]:
    """The orchestrator's root exchange: Sam's Keycloak token (``claims`` changed) and an
    actor token carrying ``ctx`` (signed by the orchestrator's key unless ``actor_key``)."""
    key = idp.vendors["keycloak"].keys[0]
    user_token = key.sign(HEADERS["keycloak"](key),
                          keycloak_claims(idp, roles=("infra-deployer",), **claims))
    actor = make_assertion(actor_key or srv.stack.clients[ORCH], issuer=ORCH, subject=ORCH,
                           audience=f"{srv.url}/token", now=int(time.time()),
                           extra={"ctx": ctx})
    return {**srv.auth(ORCH), "grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": user_token,
            "subject_token_type": TOKEN_TYPE_JWT, "actor_token": actor,
            "actor_token_type": TOKEN_TYPE_JWT, "scope": " ".join(FEDERATED_SCOPES),
            "audience": INFRABOT}


STALE = {"exp": int(time.time()) - 60, "iat": int(time.time()) - 900}

# (ctx fields, user token claims, error, reason, names the run)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str, str, bool]] = {
    # refused after the actor token verified: the record names the run
    "the user's token for another API": ({}, {"aud": "api://another-api"}, "invalid_request",
                                         "audience_mismatch", True),
    "the user's token expired": ({}, STALE, "invalid_request", "token_expired", True),
    "an unknown user": ({}, {"preferred_username": "mallory"}, "invalid_grant",
                        "unknown_user", True),
    "an inverted chain": ({}, {"act": {"sub": "sam"}}, "invalid_request", "inverted_chain",
                          True),
    "one bad context field": ({"commit": "not a commit"}, {}, "invalid_grant",
                              "invalid_context", True),
    "a context naming a provider": ({"idp": "https://idp.example"}, {}, "invalid_grant",
                                    "invalid_context", True),
    # no run id to name
    "a run id that is not one": ({"run_id": "../run"}, {}, "invalid_grant", "invalid_context",
                                 False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_refusal_of_a_federated_root_is_one_exact_record(
        federated: tuple[AuthServer, IdPServer], name: str) -> None:
    srv, idp = federated
    fields, claims, error, reason, names_run = CASES[name]
    ctx = run_ctx(**fields)
    sent = form(srv, idp, ctx, **claims)
    mark = srv.audit_mark()
    refusal(srv.post("/token", sent), 400, error, reason)
    record = srv.assert_denied(mark, reason, sent["subject_token"], sent["actor_token"],
                               sent["client_assertion"])
    assert (record.action, record.decision, record.reason, record.status, record.run_id) == (
        "root_grant", "deny", reason, 400, ctx["run_id"] if names_run else None)
    assert [(r.action, r.reason) for r in srv.stack.audit.query(run_id=ctx["run_id"])] == (
        [("root_grant", reason)] if names_run else [])


@pytest.mark.parametrize("claims", [{}, {"aud": "api://another-api"}],
                         ids=["a good user token", "a bad user token"])
def test_an_actor_token_that_did_not_verify_names_no_run(
        federated: tuple[AuthServer, IdPServer], claims: dict[str, Any]) -> None:
    srv, idp = federated
    ctx = run_ctx()
    sent = form(srv, idp, ctx, actor_key=srv.stack.clients[INFRABOT], **claims)
    mark = srv.audit_mark()
    refusal(srv.post("/token", sent), 400, "invalid_request", "invalid_actor_token")
    record = srv.assert_denied(mark, "invalid_actor_token", sent["subject_token"],
                               sent["actor_token"], sent["client_assertion"])
    assert (record.action, record.decision, record.reason, record.status, record.run_id) == (
        "root_grant", "deny", "invalid_actor_token", 400, None)
    assert srv.stack.audit.query(run_id=ctx["run_id"]) == []


def test_without_an_actor_token_no_run_is_named(federated: tuple[AuthServer, IdPServer]) -> None:
    srv, idp = federated
    sent = form(srv, idp, run_ctx(), aud="api://another-api")
    del sent["actor_token"], sent["actor_token_type"]
    mark = srv.audit_mark()
    refusal(srv.post("/token", sent), 400, "invalid_request", "audience_mismatch")
    record = srv.assert_denied(mark, "audience_mismatch", sent["subject_token"])
    assert (record.action, record.status, record.run_id) == ("root_grant", 400, None)
