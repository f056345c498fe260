"""Delegator-confirmed hand-offs over real HTTP (issue 16, docs/delegation-chain.md): the record
each agent signs, every refusal of a bad one with its exact RFC code and reason, the
``delegation_chain`` claim it grows, and the public client-keys endpoint services verify it by."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from orchestrator.identity import (
    DelegationRecord,
    JWKSet,
    PublicKey,
    SigningKey,
    generate_private_key,
    make_record,
    signing_key_of,
    verify_chain,
)
from orchestrator.identity._delegation import RECORD_TYP, canonical
from orchestrator.identity._jws import sign_bytes

from .conftest import (
    ARGOCD,
    CLEANUP,
    INFRABOT,
    AuthServer,
    refusal,
    sign_raw,
    unverified_claims,
)


def _keys_of(server: AuthServer) -> tuple[dict[str, Any], JWKSet]:
    clients = httpx.get(f"{server.url}/client_keys.json").json()
    published = JWKSet.from_dict(httpx.get(f"{server.url}/jwks.json").json(),
                                 server.settings.allowed_algs)
    return clients, published


def _report(server: AuthServer, token: str) -> Any:
    from orchestrator.identity import AccessClaims  # deferred: read here only

    clients, published = _keys_of(server)
    sets = {c: JWKSet.from_dict(e, server.settings.allowed_algs)
            for c, e in clients["clients"].items()}

    def client_key(client: str, kid: str) -> PublicKey | None:
        found = sets.get(client)
        return found.get(kid) if found else None

    claims = AccessClaims.model_validate(unverified_claims(token))
    return verify_chain(claims, client_keys=client_key, server_keys=published.get,
                        allowed_algs=server.settings.allowed_algs, leeway=5)


def test_every_hand_off_adds_its_delegators_record_and_services_tokens_carry_the_chain(
        server: AuthServer) -> None:
    root, h1, h2, aws = server.chain()
    chains = [unverified_claims(t).get("delegation_chain") for t in (root, h1, h2, aws)]
    assert chains[0] is None
    assert [(r["delegator_id"], r["delegatee_id"]) for r in chains[1]] == [(INFRABOT, ARGOCD)]
    assert [(r["delegator_id"], r["delegatee_id"]) for r in chains[2]] == [
        (ARGOCD, CLEANUP), (INFRABOT, ARGOCD)]
    assert chains[3] == chains[2]
    first = chains[2][1]
    assert first["parent_jti"] == unverified_claims(root)["jti"]
    assert first["run_id"] == unverified_claims(root)["ctx"]["run_id"]
    assert first["delegator_signature"].count(".") == 2 and ".." in first["delegator_signature"]
    assert ".." in first["as_signature"]
    for token in (h1, h2, aws):
        report = _report(server, token)
        assert report.status == "confirmed", report
        assert {r.status for r in report.records} == {"verified"}


def test_a_chain_signed_by_another_agent_is_not_confirmed(server: AuthServer) -> None:
    """The record's signature checked against the delegator's registered key, not any key."""
    _, h1, _, _ = server.chain()
    claims = unverified_claims(h1)
    record = DelegationRecord.model_validate(claims["delegation_chain"][0])
    forged = sign_bytes(canonical(record), server.stack.clients[CLEANUP],
                        {"typ": RECORD_TYP, "kid": server.stack.clients[CLEANUP].kid})
    head, _, sig = forged.split(".")
    claims["delegation_chain"][0]["delegator_signature"] = f"{head}..{sig}"
    report = _report(server, server.sign(claims))
    assert (report.status, report.reason) == ("invalid", "delegation_signature_invalid")
    assert report.records[0].status == "delegator_key_unknown"


def test_the_record_narrows_what_is_handed_off(server: AuthServer) -> None:
    root = server.root()["access_token"]
    body = server.clients[INFRABOT].exchange(root, audience=ARGOCD,
                                             scope="urn:infra:deploy:create")
    claims = unverified_claims(body["access_token"])
    assert claims["scope"] == "urn:infra:deploy:create"
    assert claims["delegation_chain"][0]["scope"] == "urn:infra:deploy:create"


def test_a_hand_off_without_a_record_is_unconfirmed_and_stays_so(server: AuthServer) -> None:
    root = server.root()["access_token"]
    h1 = server.clients[INFRABOT].exchange(root, audience=ARGOCD, confirm=False)["access_token"]
    assert "delegation_chain" not in unverified_claims(h1)
    assert _report(server, h1).reason == "unconfirmed_delegation"
    h2 = server.clients[ARGOCD].exchange(h1, audience=CLEANUP)["access_token"]
    assert "delegation_chain" not in unverified_claims(h2)  # a chain with a hop missing: none


def test_client_keys_endpoint_publishes_each_agents_public_keys_only(server: AuthServer) -> None:
    response = httpx.get(f"{server.url}/client_keys.json")
    assert response.status_code == 200
    document = response.json()
    assert set(document["clients"]) == {INFRABOT, ARGOCD, CLEANUP} | (
        set(document["clients"]) - {INFRABOT, ARGOCD, CLEANUP})
    assert all(name.startswith("agent:") for name in document["clients"])
    for agent in (INFRABOT, ARGOCD, CLEANUP):
        keys = document["clients"][agent]["keys"]
        assert [k["kid"] for k in keys] == [server.stack.clients[agent].kid]
    private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    for entry in document["clients"].values():
        for jwk in entry["keys"]:
            assert not private & set(jwk), jwk
    text = response.text
    for agent in (INFRABOT, ARGOCD, CLEANUP):
        assert '"d"' not in text
    metadata = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    assert metadata["client_keys_uri"] == f"{server.url}/client_keys.json"


def test_client_keys_document_never_serves_private_members_whatever_is_stored() -> None:
    """A registry entry whose stored JWK holds a private member is served public only."""
    from orchestrator.authserver._client_keys import client_keys_document  # deferred: unit
    from orchestrator.identity import Directory  # deferred: unit

    key = signing_key_of(generate_private_key("ES256"), "ES256")
    leaky = PublicKey(kid=key.kid, alg="ES256", key=key.public.key,
                      jwk={**key.public.jwk, "d": "c2VjcmV0"})
    directory = Directory.model_validate({"agents": {"agent:a": {"allowed_scopes": []}}})
    document = client_keys_document(directory, lambda client: {key.kid: leaky})
    served = document["clients"]["agent:a"]["keys"]
    assert served and all("d" not in jwk for jwk in served)
    assert "c2VjcmV0" not in json.dumps(document)


# -- every refusal of a record, with its RFC code and reason ------------------------------------


def _root_claims(server: AuthServer) -> tuple[str, dict[str, Any]]:
    root = server.root()["access_token"]
    return root, unverified_claims(root)


def _signed(members: dict[str, Any], key: SigningKey, **header: Any) -> str:
    record = DelegationRecord.model_validate(members)
    return sign_bytes(canonical(record), key,
                      {"typ": RECORD_TYP, "kid": key.kid, **header})


def _members(claims: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base = {"delegator_id": INFRABOT, "delegatee_id": ARGOCD,
            "delegation_timestamp": int(time.time()), "run_id": claims["ctx"]["run_id"],
            "parent_jti": claims["jti"], "scope": claims["scope"]}
    return {**base, **overrides}


CASES = [
    ("not a jws", None, 400, "invalid_request", "delegation_record_malformed"),
    ("wrong typ", {"header": {"typ": "JWT"}}, 400, "invalid_request",
     "delegation_record_malformed"),
    ("key in header", {"header": {"jku": "https://evil.example/keys"}}, 400, "invalid_request",
     "delegation_record_malformed"),
    ("another agent's key", {"key": CLEANUP}, 400, "invalid_grant",
     "delegation_signer_mismatch"),
    ("names another delegator", {"members": {"delegator_id": CLEANUP}}, 400, "invalid_grant",
     "delegation_signer_mismatch"),
    ("names another delegatee", {"members": {"delegatee_id": CLEANUP}}, 400, "invalid_target",
     "delegation_delegatee_mismatch"),
    ("another parent token", {"members": {"parent_jti": "x" * 24}}, 400, "invalid_grant",
     "delegation_parent_mismatch"),
    ("another run", {"members": {"run_id": "run-elsewhere"}}, 400, "invalid_grant",
     "delegation_run_mismatch"),
    ("scopes not held", {"members": {"scope": "urn:infra:secrets:manage"}}, 400,
     "invalid_grant", "delegation_scope_exceeds_held"),
    # dated relative to when the test runs (not when it was collected)
    ("from the future", {"members": {"delegation_timestamp": +120}}, 400,
     "invalid_grant", "delegation_record_future"),
    ("stale", {"members": {"delegation_timestamp": -3600}}, 400,
     "invalid_grant", "delegation_record_stale"),
]


@pytest.mark.parametrize(("case", "change", "status", "error", "reason"), CASES,
                         ids=[c[0] for c in CASES])
def test_each_bad_record_is_refused_with_its_code(server: AuthServer, case: str,
                                                  change: dict[str, Any] | None, status: int,
                                                  error: str, reason: str) -> None:
    root, claims = _root_claims(server)
    if change is None:
        sent = "not-a-jws"
    else:
        members = _members(claims, **change.get("members", {}))
        if "delegation_timestamp" in change.get("members", {}):  # now, moved as the case says
            members["delegation_timestamp"] = (int(time.time())
                                               + change["members"]["delegation_timestamp"])
        key = server.stack.clients[change.get("key", INFRABOT)]
        sent = _signed(members, key, **change.get("header", {}))
    mark = server.audit_mark()
    response = server.exchange(INFRABOT, root, audience=ARGOCD, delegation_record=sent)
    refusal(response, status, error, reason)
    server.assert_denied(mark, reason, sent)


def test_a_tampered_record_does_not_verify(server: AuthServer) -> None:
    root, claims = _root_claims(server)
    sent = _signed(_members(claims), server.stack.clients[INFRABOT])
    head, _payload, sig = sent.split(".")
    other = _signed(_members(claims, scope="urn:infra:deploy:create"),
                    server.stack.clients[INFRABOT]).split(".")[1]
    response = server.exchange(INFRABOT, root, audience=ARGOCD,
                               delegation_record=f"{head}.{other}.{sig}")
    refusal(response, 400, "invalid_grant", "delegation_signature_invalid")


def test_a_record_not_in_canonical_form_is_refused(server: AuthServer) -> None:
    root, claims = _root_claims(server)
    key = server.stack.clients[INFRABOT]
    sent = sign_raw({"alg": key.alg, "typ": RECORD_TYP, "kid": key.kid},
                    dict(reversed(list(_members(claims).items()))), key)
    response = server.exchange(INFRABOT, root, audience=ARGOCD, delegation_record=sent)
    refusal(response, 400, "invalid_request", "delegation_record_not_canonical")


def test_a_record_with_a_service_token_request_is_refused(server: AuthServer) -> None:
    _, h1, _, _ = server.chain()
    claims = unverified_claims(h1)
    sent = make_record(server.stack.clients[ARGOCD], delegator=ARGOCD, delegatee=CLEANUP,
                       subject=claims, scope=None, now=int(time.time()))
    response = server.exchange(ARGOCD, h1, resource=server.aws, delegation_record=sent)
    refusal(response, 400, "invalid_request", "delegation_record_unexpected")


def test_a_scope_requested_beyond_the_record_is_refused(server: AuthServer) -> None:
    """Both scopes are grantable to ArgoCD; the record hands off only one."""
    _, h1, _, _ = server.chain()
    first, second = sorted(unverified_claims(h1)["scope"].split())[:2]
    root, claims = _root_claims(server)
    sent = _signed(_members(claims, scope=first), server.stack.clients[INFRABOT])
    response = server.exchange(INFRABOT, root, audience=ARGOCD, delegation_record=sent,
                               scope=f"{first} {second}")
    refusal(response, 400, "invalid_scope", "scope_not_delegated")
