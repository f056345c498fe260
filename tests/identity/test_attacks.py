"""The attack suite: malformed, forged, expired, mis-scoped, mis-audienced, replayed, revoked and
over-deep tokens. None is accepted; every refusal is ``InvalidToken`` with its specific reason,
never another exception type.

Every case is a function of the :class:`Authority` (the issuer's real key ring) returning what an
attacker presents, plus the reason the verifier must give and the audience it verifies for.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

from orchestrator.errors import InvalidToken
from orchestrator.identity import (
    MemoryRevocationStore,
    SigningKey,
    generate_private_key,
    mint,
    signing_key_of,
)
from orchestrator.identity._jws import canonical

from .conftest import (
    AWS,
    DATADOG,
    ISSUER,
    NOW,
    Authority,
    b64,
    b64json,
    hmac_sign,
    make_ctx,
    sign_raw,
)


@dataclass(frozen=True)
class Attack:
    forge: Callable[[Authority], object]
    reason: str
    audience: str = ISSUER


def _replace_segment(token: str, index: int, segment: str) -> str:
    parts = token.split(".")
    parts[index] = segment
    return ".".join(parts)


def _valid(a: Authority, **overrides: Any) -> str:
    return a.sign(a.payload(**overrides))


def _flip_signature_byte(a: Authority) -> str:
    token = _valid(a)
    signature = bytearray(base64.urlsafe_b64decode(token.split(".")[2] + "=="))
    signature[10] ^= 0x01
    return _replace_segment(token, 2, b64(bytes(signature)))


def _modified_scope(a: Authority) -> str:
    # The attacker re-encodes the payload with a wider scope and keeps the issuer's signature.
    token = _valid(a)
    payload = a.payload(scope="urn:infra:monitoring:read urn:infra:secrets:manage")
    return _replace_segment(token, 1, b64json(payload))


def _impostor_key_same_kid(a: Authority) -> str:
    impostor = signing_key_of(generate_private_key("ES256"), "ES256")
    return sign_raw(a.header(), a.payload(), impostor)


def _hs256_with_public_key(a: Authority) -> str:
    pem = a.key.public.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hmac_sign(a.header(alg="HS256"), a.payload(), pem)


def _hs256_with_public_jwk(a: Authority) -> str:
    secret = json.dumps(a.key.public.jwk).encode()
    return hmac_sign(a.header(alg="HS256"), a.payload(), secret)


def _unsigned(a: Authority) -> str:
    return f"{b64json(a.header(alg='none'))}.{b64json(a.payload())}."


def _alg_none_with_signature(a: Authority) -> str:
    return f"{b64json(a.header(alg='none'))}.{b64json(a.payload())}.c2ln"


def _rs256_header_on_es256_key(a: Authority) -> str:
    return sign_raw(a.header(alg="RS256"), a.payload(), a.key)


def _es384(a: Authority) -> str:
    return sign_raw(a.header(alg="ES384"), a.payload(), a.key, alg="ES256")


def _rsa_key_signing_with_es256_kid(a: Authority) -> str:
    rsa_key = signing_key_of(generate_private_key("RS256"), "RS256")
    return sign_raw(a.header(alg="RS256"), a.payload(), rsa_key)


def _raw(header_json: str, payload: Any, key: SigningKey) -> str:
    """A header given as literal JSON text, signed for real."""
    body = payload if isinstance(payload, str) else b64json(payload)
    signing_input = f"{b64(header_json.encode())}.{body}".encode()
    signature = get_default_algorithms()[key.alg].sign(signing_input, key.private)
    return f"{signing_input.decode()}.{b64(canonical(key.alg, signature))}"


def _payload_bytes(a: Authority, data: bytes) -> str:
    return a.sign(data)


def _depth(n: int) -> dict[str, Any] | None:
    act: dict[str, Any] | None = None
    for i in range(n):
        act = {"sub": f"agent:a{i}", **({"act": act} if act else {})}
    return act


def _nested_json(a: Authority) -> str:
    # Deeper than the JSON parser's recursion limit; still well under the size limit.
    return _payload_bytes(a, b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}")


def _replayed_to_another_service(a: Authority) -> str:
    return mint(a.chain_to_aws()[-1].claims, a.key)


def _hand_off_token(a: Authority) -> str:
    return mint(a.chain_to_aws()[2].claims, a.key)


def _aws_token(a: Authority) -> str:
    return mint(a.chain_to_aws()[-1].claims, a.key)


MISSING = ("iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "ctx", "user_version",
           "registry_epoch")

ATTACKS: dict[str, Attack] = {
    # shape
    "empty_string": Attack(lambda a: "", "malformed"),
    "none": Attack(lambda a: None, "malformed"),
    "int": Attack(lambda a: 12345, "malformed"),
    "bytes": Attack(lambda a: _valid(a).encode(), "malformed"),
    "dict": Attack(lambda a: {"token": _valid(a)}, "malformed"),
    "garbage": Attack(lambda a: "this is not a token", "malformed"),
    "garbage_segments": Attack(lambda a: "abc.def.ghi", "malformed"),
    "two_segments": Attack(lambda a: ".".join(_valid(a).split(".")[:2]), "malformed"),
    "four_segments": Attack(lambda a: _valid(a) + ".AAAA", "malformed"),
    "five_segments_jwe": Attack(lambda a: "eyJhbGciOiJSU0EifQ.a.b.c.d", "malformed"),
    "trailing_newline": Attack(lambda a: _valid(a) + "\n", "malformed"),
    "leading_space": Attack(lambda a: " " + _valid(a), "malformed"),
    "newline_after_header": Attack(lambda a: _valid(a).replace(".", "\n.", 1), "malformed"),
    "newline_after_crit_header": Attack(
        lambda a: a.sign(a.payload(), header=a.header(crit=["exp"])).replace(".", "\n.", 1),
        "malformed"),
    "newline_after_payload": Attack(
        lambda a: ".".join(_valid(a).split(".")[:2]) + "\n." + _valid(a).split(".")[2],
        "malformed"),
    "padding_in_segment": Attack(lambda a: _valid(a) + "==", "malformed"),
    "non_base64_chars": Attack(lambda a: _valid(a).replace(".", "+.", 1), "malformed"),
    "empty_signature": Attack(lambda a: _valid(a).rsplit(".", 1)[0] + ".", "malformed"),
    "too_large": Attack(lambda a: _valid(a, extra="x" * 9000), "token_too_large"),
    "too_large_garbage": Attack(lambda a: "a" * 5000 + "." + "b" * 5000 + ".c", "token_too_large"),
    # header
    "header_not_json": Attack(lambda a: _replace_segment(_valid(a), 0, b64(b"{alg")), "malformed"),
    "header_json_array": Attack(lambda a: _replace_segment(_valid(a), 0, b64json(["ES256"])),
                                "malformed"),
    "header_not_utf8": Attack(lambda a: _replace_segment(_valid(a), 0, b64(b"\xff\xfe")),
                              "malformed"),
    "alg_none_unsigned": Attack(_unsigned, "malformed"),
    "alg_none_with_signature": Attack(_alg_none_with_signature, "alg_not_allowed"),
    "alg_None_capitalised": Attack(
        lambda a: f"{b64json(a.header(alg='None'))}.{b64json(a.payload())}.c2ln",
        "alg_not_allowed"),
    "alg_missing": Attack(lambda a: sign_raw(a.header(alg=None), a.payload(), a.key),
                          "alg_not_allowed"),
    "alg_as_list": Attack(lambda a: _raw(
        json.dumps({"alg": ["ES256"], "typ": "at+jwt", "kid": a.key.kid}), a.payload(), a.key),
        "alg_not_allowed"),
    "hs256_key_confusion_pem": Attack(_hs256_with_public_key, "alg_not_allowed"),
    "hs256_key_confusion_jwk": Attack(_hs256_with_public_jwk, "alg_not_allowed"),
    "es384_not_allowed": Attack(_es384, "alg_not_allowed"),
    "rs256_header_on_es256_key": Attack(_rs256_header_on_es256_key, "alg_mismatch"),
    "rsa_signature_for_es256_kid": Attack(_rsa_key_signing_with_es256_kid, "alg_mismatch"),
    "kid_unknown": Attack(lambda a: a.sign(a.payload(), header=a.header(kid="no-such-key")),
                          "unknown_kid"),
    "kid_path_traversal": Attack(
        lambda a: a.sign(a.payload(), header=a.header(kid="../../etc/passwd")), "unknown_kid"),
    "kid_missing": Attack(lambda a: a.sign(a.payload(), header=a.header(kid=None)),
                          "missing_kid"),
    "kid_empty": Attack(lambda a: a.sign(a.payload(), header=a.header(kid="")), "missing_kid"),
    "kid_too_long": Attack(lambda a: a.sign(a.payload(), header=a.header(kid="k" * 129)),
                           "missing_kid"),
    "kid_not_a_string": Attack(lambda a: a.sign(a.payload(), header=a.header(kid=7)),
                               "missing_kid"),
    "header_jwk": Attack(
        lambda a: a.sign(a.payload(), header=a.header(jwk=a.key.public.jwk)), "key_in_header"),
    "header_jku": Attack(
        lambda a: a.sign(a.payload(), header=a.header(jku="https://evil.example/jwks")),
        "key_in_header"),
    "header_x5u": Attack(
        lambda a: a.sign(a.payload(), header=a.header(x5u="https://evil.example/cert")),
        "key_in_header"),
    "header_x5c": Attack(lambda a: a.sign(a.payload(), header=a.header(x5c=["MIIB"])),
                         "key_in_header"),
    "header_x5t": Attack(lambda a: a.sign(a.payload(), header=a.header(x5t="abc")),
                         "key_in_header"),
    "header_crit": Attack(lambda a: a.sign(a.payload(), header=a.header(crit=["exp"])),
                          "unsupported_crit"),
    "header_crit_b64": Attack(
        lambda a: a.sign(a.payload(), header=a.header(crit=["b64"], b64=True)),
        "unsupported_crit"),
    "header_b64_false": Attack(lambda a: a.sign(a.payload(), header=a.header(b64=False)),
                               "unexpected_header"),
    "header_extra_param": Attack(lambda a: a.sign(a.payload(), header=a.header(cty="JWT")),
                                 "unexpected_header"),
    "typ_missing": Attack(lambda a: a.sign(a.payload(), header=a.header(typ=None)), "wrong_typ"),
    "typ_jwt": Attack(lambda a: a.sign(a.payload(), header=a.header(typ="JWT")), "wrong_typ"),
    "typ_id_token": Attack(lambda a: a.sign(a.payload(), header=a.header(typ="id_token+jwt")),
                           "wrong_typ"),
    "typ_not_a_string": Attack(lambda a: a.sign(a.payload(), header=a.header(typ=1)),
                               "wrong_typ"),
    # payload encoding
    "payload_not_json": Attack(lambda a: _payload_bytes(a, b"not json"), "malformed"),
    "payload_json_array": Attack(lambda a: a.sign([a.payload()]), "malformed"),
    "payload_json_string": Attack(lambda a: a.sign("user:sam"), "malformed"),
    "payload_json_null": Attack(lambda a: a.sign(None), "malformed"),
    "payload_not_utf8": Attack(lambda a: _payload_bytes(a, b"\xff\xfe{}"), "malformed"),
    "payload_deeply_nested_json": Attack(_nested_json, "malformed"),
    # signature
    "signature_byte_flipped": Attack(_flip_signature_byte, "bad_signature"),
    "signature_truncated": Attack(
        lambda a: _replace_segment(_valid(a), 2, _valid(a).split(".")[2][:40]), "bad_signature"),
    "payload_modified_scope": Attack(_modified_scope, "bad_signature"),
    "signature_of_another_token": Attack(
        lambda a: _replace_segment(_valid(a), 2, _valid(a, jti="jti-other-0001").split(".")[2]),
        "bad_signature"),
    "different_key_same_kid": Attack(_impostor_key_same_kid, "bad_signature"),
    # issuer and audience
    "wrong_issuer": Attack(lambda a: _valid(a, iss="http://127.0.0.1:9999"), "issuer_mismatch"),
    "issuer_trailing_slash": Attack(lambda a: _valid(a, iss=ISSUER + "/"), "issuer_mismatch"),
    "issuer_as_list": Attack(lambda a: _valid(a, iss=[ISSUER]), "issuer_mismatch"),
    "wrong_audience": Attack(lambda a: _valid(a, aud=DATADOG), "audience_mismatch"),
    "aud_as_list": Attack(lambda a: _valid(a, aud=[ISSUER]), "audience_mismatch"),
    "aud_as_list_of_two": Attack(lambda a: _valid(a, aud=[ISSUER, AWS]), "audience_mismatch"),
    "service_token_replayed_to_another_service": Attack(
        _replayed_to_another_service, "audience_mismatch", DATADOG),
    "service_token_replayed_at_the_authorization_server": Attack(
        _aws_token, "audience_mismatch", ISSUER),
    "hand_off_token_used_as_bearer_at_a_service": Attack(
        _hand_off_token, "audience_mismatch", AWS),
    # time
    "expired": Attack(lambda a: _valid(a, iat=NOW - 700, exp=NOW - 100), "token_expired"),
    "expired_beyond_leeway": Attack(lambda a: _valid(a, iat=NOW - 600, exp=NOW - 5),
                                    "token_expired"),
    "nbf_in_future": Attack(lambda a: _valid(a, nbf=NOW + 60), "token_not_yet_valid"),
    "iat_in_future": Attack(lambda a: _valid(a, iat=NOW + 60, exp=NOW + 600),
                            "token_not_yet_valid"),
    "lifetime_over_900s": Attack(lambda a: _valid(a, exp=NOW + 901), "lifetime_too_long"),
    "lifetime_a_century": Attack(lambda a: _valid(a, exp=NOW + 100 * 365 * 86400),
                                 "lifetime_too_long"),
    "exp_as_string": Attack(lambda a: _valid(a, exp=str(NOW + 600)), "invalid_claims"),
    "exp_as_bool": Attack(lambda a: _valid(a, exp=True), "invalid_claims"),
    "exp_as_float": Attack(lambda a: _valid(a, exp=NOW + 600.5), "invalid_claims"),
    "iat_as_string": Attack(lambda a: _valid(a, iat=str(NOW)), "invalid_claims"),
    "nbf_as_bool": Attack(lambda a: _valid(a, nbf=False), "invalid_claims"),
    # required and well-formed claims
    **{f"missing_{name}": Attack(lambda a, name=name: a.sign(
        {k: v for k, v in a.payload().items() if k != name}), "missing_claim")
       for name in MISSING},
    "extra_top_level_claim": Attack(lambda a: _valid(a, admin=True), "invalid_claims"),
    "scope_malformed": Attack(lambda a: _valid(a, scope="monitoring:read"), "invalid_claims"),
    "scope_empty": Attack(lambda a: _valid(a, scope=""), "invalid_claims"),
    "scope_as_list": Attack(lambda a: _valid(a, scope=["urn:infra:monitoring:read"]),
                            "invalid_claims"),
    "scope_with_newline": Attack(lambda a: _valid(a, scope="urn:infra:monitoring:read\n"),
                                 "invalid_claims"),
    "jti_too_short": Attack(lambda a: _valid(a, jti="abc"), "invalid_claims"),
    "sub_with_newline": Attack(lambda a: _valid(a, sub="user:sam\n"), "invalid_claims"),
    "ctx_missing_run_id": Attack(
        lambda a: _valid(a, ctx={k: v for k, v in make_ctx().model_dump().items()
                                 if k != "run_id"}), "invalid_claims"),
    "ctx_extra_field": Attack(lambda a: _valid(a, ctx={**make_ctx().model_dump(), "x": "y"}),
                              "invalid_claims"),
    "user_version_negative": Attack(lambda a: _valid(a, user_version=-1), "invalid_claims"),
    "user_version_as_string": Attack(lambda a: _valid(a, user_version="0"), "invalid_claims"),
    "may_act_with_scope": Attack(
        lambda a: _valid(a, may_act={"sub": "agent:infrabot", "scope": "urn:infra:a:read"}),
        "invalid_claims"),
    # the act chain
    "act_as_string": Attack(lambda a: _valid(a, act="agent:infrabot"), "invalid_act"),
    "act_as_list": Attack(lambda a: _valid(a, act=[{"sub": "agent:infrabot"}]), "invalid_act"),
    "act_as_number": Attack(lambda a: _valid(a, act=7), "invalid_act"),
    "inner_act_as_string": Attack(
        lambda a: _valid(a, act={"sub": "agent:argocd", "act": "agent:infrabot"}), "invalid_act"),
    "act_without_sub": Attack(lambda a: _valid(a, act={}), "invalid_claims"),
    "act_with_a_bad_sub_beside_ignored_claims": Attack(
        lambda a: _valid(a, act={"sub": "agent:Infrabot", "exp": NOW + 9999}), "invalid_claims"),
    "inverted_chain": Attack(
        lambda a: _valid(a, sub="agent:infrabot", act={"sub": "user:sam"}), "inverted_chain"),
    "agent_subject_without_act": Attack(lambda a: _valid(a, sub="agent:infrabot"),
                                        "inverted_chain"),
    "user_inside_the_chain": Attack(
        lambda a: _valid(a, act={"sub": "agent:argocd", "act": {"sub": "user:alex"}}),
        "inverted_chain"),
    "client_as_subject": Attack(lambda a: _valid(a, sub="client:orchestrator"),
                                "invalid_subject"),
    "client_as_actor": Attack(lambda a: _valid(a, act={"sub": "client:orchestrator"}),
                              "inverted_chain"),
    "cycle": Attack(lambda a: _valid(a, act={"sub": "agent:infrabot", "act": {
        "sub": "agent:argocd", "act": {"sub": "agent:infrabot"}}}), "chain_cycle"),
    "depth_5": Attack(lambda a: _valid(a, act=_depth(5)), "max_depth_exceeded"),
    "act_nested_20_deep": Attack(lambda a: _valid(a, act=_depth(20)), "max_depth_exceeded"),
    "act_nested_500_deep": Attack(lambda a: _valid(a, act=_depth(500)), "token_too_large"),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_attack_is_refused_with_its_reason(authority: Authority, attack: Attack) -> None:
    token = attack.forge(authority)
    with pytest.raises(InvalidToken) as info:
        authority.verify(token, audience=attack.audience)
    assert info.value.code == "invalid_token"
    assert info.value.status == 401
    assert info.value.reason == attack.reason


def test_the_suite_is_at_least_thirty_distinct_attacks() -> None:
    assert len(ATTACKS) >= 30
    assert len({a.reason for a in ATTACKS.values()}) >= 15


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_refusal_messages_never_contain_the_token(authority: Authority, attack: Attack) -> None:
    token = attack.forge(authority)
    with pytest.raises(InvalidToken) as info:
        authority.verify(token, audience=attack.audience)
    if isinstance(token, str) and len(token) > 16:
        for segment in token.split("."):
            if len(segment) > 16:
                assert segment not in str(info.value)


# --- revoked tokens: signed, well formed, and refused by the registry ---------------------------

def _revoke_jti(store: MemoryRevocationStore, chain: list[Any]) -> None:
    store.revoke_jti(chain[-1].claims.jti, expires_at=chain[-1].claims.exp)


def _revoke_root(store: MemoryRevocationStore, chain: list[Any]) -> None:
    store.revoke_jti(chain[0].claims.jti, expires_at=chain[0].claims.exp)


def _revoke_middle(store: MemoryRevocationStore, chain: list[Any]) -> None:
    store.revoke_jti(chain[1].claims.jti, expires_at=chain[1].claims.exp)


REVOCATIONS: dict[str, tuple[Callable[[MemoryRevocationStore, list[Any]], None], str]] = {
    "revoked_jti": (_revoke_jti, "token_revoked"),
    "revoked_root": (_revoke_root, "ancestor_revoked"),
    "revoked_intermediate_hand_off": (_revoke_middle, "ancestor_revoked"),
    "revoked_run": (lambda s, c: s.revoke_run(c[0].claims.ctx.run_id), "run_revoked"),
    "revoked_user": (lambda s, c: s.revoke_user("user:sam"), "user_revoked"),
}


@pytest.mark.parametrize(("revoke", "reason"), REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_revoked_tokens_are_refused(
        authority: Authority, revoke: Callable[[MemoryRevocationStore, list[Any]], None],
        reason: str) -> None:
    store = MemoryRevocationStore(epoch=authority.epoch)
    chain = authority.chain_to_aws()
    verified = authority.verify(mint(chain[-1].claims, authority.key), audience=AWS)
    store.check(verified.claims)
    revoke(store, chain)
    with pytest.raises(InvalidToken) as info:
        store.check(verified.claims)
    assert info.value.code == "invalid_token"
    assert info.value.reason == reason
