"""DESIGN.md section 2 over real HTTP: sam's run, InfraBot -> ArgoCD -> CleanupAgent -> AWS."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from orchestrator.authserver import TOKEN_TYPE_ACCESS

from .conftest import (
    ARGOCD,
    CLEANUP,
    INFRABOT,
    ORCH,
    WORKFLOW_SCOPES,
    AuthServer,
    refusal,
    unverified_claims,
    unverified_header,
)

RESPONSE_FIELDS = {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}


def _exchange_raw(server: AuthServer, client: str, subject: str, **fields: str) -> dict[str, Any]:
    response = server.exchange(client, subject, **fields)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body: dict[str, Any] = response.json()
    assert set(body) == RESPONSE_FIELDS
    assert body["issued_token_type"] == TOKEN_TYPE_ACCESS
    assert body["token_type"] == "Bearer"
    return body


@pytest.fixture(scope="module")
def hops(server: AuthServer) -> dict[str, Any]:
    ctx = server.ctx(run_id="run-three-hop")
    grant = server.post("/token", {**server.auth(ORCH), **server.grant_form("user:sam", ctx)})
    assert grant.status_code == 200, grant.text
    assert grant.headers["cache-control"] == "no-store"
    assert grant.headers["pragma"] == "no-cache"
    root = grant.json()
    assert set(root) == RESPONSE_FIELDS
    h1 = _exchange_raw(server, INFRABOT, root["access_token"], audience=ARGOCD)
    h2 = _exchange_raw(server, ARGOCD, h1["access_token"], audience=CLEANUP)
    final = _exchange_raw(server, CLEANUP, h2["access_token"], resource=server.aws,
                          scope="urn:infra:infrastructure:clean")
    bodies = [root, h1, h2, final]
    return {"ctx": ctx, "bodies": bodies,
            "claims": [unverified_claims(b["access_token"]) for b in bodies]}


def test_final_token_is_sams_for_aws_through_the_whole_chain(
        server: AuthServer, hops: dict[str, Any]) -> None:
    final = hops["claims"][-1]
    assert final["sub"] == "user:sam"
    assert final["aud"] == server.aws
    assert final["iss"] == server.issuer
    assert final["client_id"] == CLEANUP
    assert final["scope"] == "urn:infra:infrastructure:clean"
    assert final["act"] == {"sub": CLEANUP, "act": {"sub": ARGOCD, "act": {"sub": INFRABOT}}}
    assert "may_act" not in final
    assert final["ctx"] == hops["ctx"].model_dump()
    assert set(final) >= {"iat", "exp", "jti", "revocation_url", "log_url"}


def test_each_hop_names_the_next_actor_and_nests_the_caller(hops: dict[str, Any]) -> None:
    root, h1, h2, _ = hops["claims"]
    assert root["may_act"] == {"sub": INFRABOT} and "act" not in root
    assert root["client_id"] == ORCH
    assert h1["may_act"] == {"sub": ARGOCD}
    assert h1["act"] == {"sub": INFRABOT}
    assert h2["may_act"] == {"sub": CLEANUP}
    assert h2["act"] == {"sub": ARGOCD, "act": {"sub": INFRABOT}}
    for hand_off in (root, h1, h2):
        assert hand_off["aud"] == hand_off["iss"]  # hand-off tokens are for the server only
        assert hand_off["sub"] == "user:sam"


def test_act_claims_carry_identity_only(hops: dict[str, Any]) -> None:
    node = hops["claims"][-1]["act"]
    while node is not None:
        assert set(node) <= {"sub", "act"}
        node = node.get("act")


def test_scopes_only_narrow(hops: dict[str, Any]) -> None:
    scopes = [set(c["scope"].split(" ")) for c in hops["claims"]]
    assert scopes[0] <= set(WORKFLOW_SCOPES)
    for previous, current in itertools.pairwise(scopes):
        assert current <= previous
    assert scopes[-1] == {"urn:infra:infrastructure:clean"}
    for body, claims in zip(hops["bodies"], hops["claims"], strict=True):
        assert body["scope"] == claims["scope"]


def test_lifetimes_never_extend(hops: dict[str, Any]) -> None:
    exps = [c["exp"] for c in hops["claims"]]
    for previous, current in itertools.pairwise(exps):
        assert current <= previous
    now = int(time.time())
    for body, claims in zip(hops["bodies"], hops["claims"], strict=True):
        assert 0 < body["expires_in"] <= 900
        assert abs(claims["exp"] - now - body["expires_in"]) <= 5


def test_ancestors_list_every_previous_jti_in_order(hops: dict[str, Any]) -> None:
    claims = hops["claims"]
    jtis = [c["jti"] for c in claims]
    assert len(set(jtis)) == 4
    assert claims[0].get("ancestors", []) == []
    assert claims[1]["ancestors"] == jtis[:1]
    assert claims[2]["ancestors"] == jtis[:2]
    assert claims[3]["ancestors"] == jtis[:3]


def test_tokens_are_rfc9068_with_the_current_kid(server: AuthServer, hops: dict[str, Any]) -> None:
    for body in hops["bodies"]:
        header = unverified_header(body["access_token"])
        assert header == {"alg": "ES256", "typ": "at+jwt", "kid": server.key.kid}


def test_introspection_of_the_final_token_returns_the_chain_and_ctx(
        server: AuthServer, hops: dict[str, Any]) -> None:
    final = hops["bodies"][-1]["access_token"]
    answer = server.introspect(final)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["active"] is True
    assert body["chain"] == [CLEANUP, ARGOCD, INFRABOT, "user:sam"]
    assert body["current_actor"] == CLEANUP
    assert body["sub"] == body["username"] == "user:sam"
    assert body["ctx"] == hops["ctx"].model_dump()
    assert body["aud"] == server.aws
    assert body["scope"] == "urn:infra:infrastructure:clean"
    assert body["jti"] == hops["claims"][-1]["jti"]
    assert body["ancestors"] == hops["claims"][-1]["ancestors"]


def test_the_exchanges_are_audited_as_allowed_without_tokens(
        server: AuthServer, hops: dict[str, Any]) -> None:
    records = server.stack.audit.query(run_id=hops["ctx"].run_id, decision="allow")
    issued = [r for r in records if r.action in ("root_grant", "token_exchange")]
    assert [r.action for r in issued] == ["root_grant", *["token_exchange"] * 3]
    assert [r.performed_by for r in issued] == [ORCH, INFRABOT, ARGOCD, CLEANUP]
    assert issued[-1].chain == (CLEANUP, ARGOCD, INFRABOT, "user:sam")
    assert [r.jti for r in issued] == [c["jti"] for c in hops["claims"]]
    server.assert_not_stored(*(b["access_token"] for b in hops["bodies"]))


def test_the_project_client_drives_the_same_chain(server: AuthServer) -> None:
    tokens = server.chain()
    claims = unverified_claims(tokens[-1])
    assert claims["act"] == {"sub": CLEANUP, "act": {"sub": ARGOCD, "act": {"sub": INFRABOT}}}
    assert claims["aud"] == server.aws
    assert claims["ancestors"] == [unverified_claims(t)["jti"] for t in tokens[:3]]


def test_lifetimes_are_capped_by_configuration(server: AuthServer, hops: dict[str, Any]) -> None:
    root, *exchanged = hops["claims"]
    assert root["exp"] - root["iat"] <= server.settings.root_token_ttl_seconds
    for claims in exchanged:
        assert claims["exp"] - claims["iat"] <= server.settings.token_ttl_seconds


def test_a_narrowed_hand_off_cannot_be_widened_again(server: AuthServer) -> None:
    root = server.root()["access_token"]
    h1 = server.clients[INFRABOT].exchange(root, audience=ARGOCD, scope="urn:infra:deploy:create")
    assert h1["scope"] == "urn:infra:deploy:create"
    response = server.exchange(ARGOCD, h1["access_token"], audience=CLEANUP,
                               scope="urn:infra:infrastructure:clean")
    refusal(response, 400, "invalid_scope", "scope_not_grantable")
    response = server.exchange(ARGOCD, h1["access_token"], audience=CLEANUP)
    refusal(response, 400, "invalid_scope", "no_grantable_scope")
