"""The pure chain check (issue 16): every status a record can get, and the verdict on a chain,
each with its exact reason; and the records' server-side rules (extend, confine)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import InvalidScope
from orchestrator.identity import (
    AccessClaims,
    DelegationRecord,
    PublicKey,
    SigningKey,
    attest,
    confine,
    extend_chain,
    generate_private_key,
    signing_key_of,
    verify_chain,
    verify_record,
)
from orchestrator.identity._delegation import RECORD_TYP, canonical, detached
from orchestrator.identity._jws import sign_bytes

NOW = 1_800_000_000
ALGS = ("ES256", "RS256", "EdDSA")
A, B, C = "agent:infrabot", "agent:argocd", "agent:cleanup"
SCOPES = "urn:infra:deploy:create urn:infra:infrastructure:clean urn:infra:monitoring:read"
KEYS = {agent: signing_key_of(generate_private_key("ES256"), "ES256") for agent in (A, B, C)}
SERVER = signing_key_of(generate_private_key("ES256"), "ES256")


def _client_key(client: str, kid: str) -> PublicKey | None:
    key = KEYS.get(client)
    return key.public if key is not None and key.kid == kid else None


def _server_key(kid: str) -> PublicKey | None:
    return SERVER.public if kid == SERVER.kid else None


def record(delegator: str, delegatee: str, *, scope: str = SCOPES, at: int = NOW - 10,
           parent: str = "parent-jti-0001", run: str = "run-1",
           signer: SigningKey | None = None, attested: bool = True) -> DelegationRecord:
    bare = DelegationRecord(delegator_id=delegator, delegatee_id=delegatee,
                            delegation_timestamp=at, run_id=run, parent_jti=parent, scope=scope)
    key = signer or KEYS[delegator]
    signed = bare.model_copy(update={"delegator_signature": detached(sign_bytes(
        canonical(bare), key, {"typ": RECORD_TYP, "kid": key.kid}))})
    return attest(signed, SERVER) if attested else signed


def claims(chain: tuple[DelegationRecord, ...] | None, *, act: dict[str, Any] | None = None,
           may_act: str | None = None, scope: str = SCOPES) -> AccessClaims:
    return AccessClaims.model_validate({
        "iss": "http://auth", "sub": "user:sam", "aud": "http://aws", "client_id": C,
        "scope": scope, "iat": NOW, "exp": NOW + 300, "jti": "token-jti-0001",
        "act": act or {"sub": C, "act": {"sub": B, "act": {"sub": A}}},
        **({"may_act": {"sub": may_act}} if may_act else {}),
        "ctx": {"trigger": "ci", "environment": "prod", "repository": "acme/x",
                "commit": "abc", "run_id": "run-1"},
        "user_version": 0, "registry_epoch": "epoch-0001",
        "ancestors": ["parent-jti-0001", "parent-jti-0002"],
        "delegation_chain": chain})


def verdict(token: AccessClaims) -> tuple[str, str | None, list[str]]:
    report = verify_chain(token, client_keys=_client_key, server_keys=_server_key,
                          allowed_algs=ALGS, leeway=5)
    return report.status, report.reason, [r.status for r in report.records]


GOOD = (record(B, C, parent="parent-jti-0002"), record(A, B, at=NOW - 20))


def test_a_full_chain_is_confirmed() -> None:
    assert verdict(claims(GOOD)) == ("confirmed", None, ["verified", "verified"])


def test_a_hand_off_tokens_chain_includes_its_delegatee() -> None:
    token = claims((record(A, B),), act={"sub": A}, may_act=B)
    assert verdict(token) == ("confirmed", None, ["verified"])


def test_nothing_to_confirm_for_the_first_agent() -> None:
    assert verdict(claims(None, act={"sub": A}))[:2] == ("confirmed", None)


def test_a_delegated_token_without_a_chain_is_unconfirmed() -> None:
    assert verdict(claims(None)) == ("unconfirmed", "unconfirmed_delegation", [])


@pytest.mark.parametrize(("chain", "status", "reason"), [
    ((record(B, C, signer=KEYS[C]), GOOD[1]), "delegator_key_unknown",
     "delegation_signature_invalid"),
    ((record(B, C).model_copy(update={"delegator_signature": None}), GOOD[1]),
     "delegator_signature_missing", "delegation_signature_invalid"),
    ((record(B, C).model_copy(update={"scope": "urn:infra:deploy:create"}), GOOD[1]),
     "scope_widened", "delegation_scope_widened"),
    ((record(B, C, attested=False), GOOD[1]), "attestation_invalid",
     "delegation_attestation_invalid"),
    ((record(A, C), GOOD[1]), "act_mismatch", "delegation_chain_mismatch"),
    ((record(B, C, run="run-2"), GOOD[1]), "run_mismatch", "delegation_chain_mismatch"),
    ((record(B, C, parent="not-an-ancestor"), GOOD[1]), "parent_mismatch",
     "delegation_chain_mismatch"),
    ((record(B, C, at=NOW + 60), GOOD[1]), "time_order", "delegation_time_invalid"),
    ((record(B, C, at=NOW - 30), GOOD[1]), "time_order", "delegation_time_invalid"),
], ids=["never-signed-by-its-delegator", "unsigned", "tampered-scope", "unattested",
        "not-the-act-nesting", "another-run", "not-from-an-ancestor", "after-the-token",
        "before-the-earlier-record"])
def test_each_bad_record_fails_the_chain(chain: tuple[DelegationRecord, ...], status: str,
                                         reason: str) -> None:
    got_status, got_reason, statuses = verdict(claims(chain))
    assert (got_status, got_reason, statuses[0]) == ("invalid", reason, status)


def test_scopes_must_narrow_along_the_chain() -> None:
    wide = record(B, C, scope=SCOPES)
    narrow_first = record(A, B, scope="urn:infra:deploy:create", at=NOW - 20)
    token = claims((wide, narrow_first), scope="urn:infra:deploy:create")
    assert verdict(token)[:2] == ("invalid", "delegation_scope_widened")


def test_the_token_scope_must_be_among_the_last_records() -> None:
    narrow = record(B, C, scope="urn:infra:deploy:create", parent="parent-jti-0002")
    assert verdict(claims((narrow, GOOD[1])))[:2] == ("invalid", "delegation_scope_widened")


def test_a_chain_with_a_record_missing_does_not_match_act() -> None:
    assert verdict(claims(GOOD[:1]))[:2] == ("invalid", "delegation_chain_mismatch")


def test_a_garbled_signature_is_invalid_not_an_error() -> None:
    bad = record(B, C).model_copy(update={"delegator_signature": "e30..AAAA"})
    assert verdict(claims((bad, GOOD[1])))[2][0] == "delegator_signature_invalid"


def test_extend_chain_only_on_a_complete_chain() -> None:
    hand_off = claims((record(A, B),), act={"sub": A}, may_act=B)
    new = record(B, C)
    assert extend_chain(hand_off, new) == (new, *(hand_off.delegation_chain or ()))
    assert extend_chain(hand_off, None) is None
    unconfirmed = claims(None, act={"sub": A}, may_act=B)
    assert extend_chain(unconfirmed, new) is None


def test_confine_narrows_and_refuses_nothing_left() -> None:
    token = claims(None, act={"sub": A}, may_act=B)
    kept = confine(token, record(A, B, scope="urn:infra:deploy:create"))
    assert kept.scope == "urn:infra:deploy:create"
    with pytest.raises(InvalidScope) as refused:
        confine(token.model_copy(update={"scope": "urn:infra:monitoring:read"}),
                record(A, B, scope="urn:infra:deploy:create"))
    assert refused.value.reason == "no_grantable_scope"


def test_verify_record_returns_the_detached_delegator_signature() -> None:
    bare = DelegationRecord(delegator_id=A, delegatee_id=B, delegation_timestamp=NOW,
                            run_id="run-1", parent_jti="parent-jti-0001", scope=SCOPES)
    sent = sign_bytes(canonical(bare), KEYS[A], {"typ": RECORD_TYP, "kid": KEYS[A].kid})
    got = verify_record(sent, keys={KEYS[A].kid: KEYS[A].public}, allowed_algs=ALGS, now=NOW)
    assert got.delegator_signature == detached(sent)
    assert verdict(claims((attest(got, SERVER),), act={"sub": A}, may_act=B))[0] == "confirmed"
