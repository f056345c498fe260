"""DPoP proofs (RFC 9449) in the identity core: every check :func:`verify_proof` makes, each with
its exact error and reason, the nonce, the holder check and the binding rules. The clock is
passed in; nothing here touches the network."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from jwt.algorithms import get_default_algorithms

from orchestrator.errors import DPoPRefusal, InvalidDPoPProof, OAuthError, UseDPoPNonce
from orchestrator.identity import (
    AccessClaims,
    Confirmation,
    Context,
    Directory,
    Grant,
    MayAct,
    NonceIssuer,
    Proof,
    ProofCheck,
    ProofPolicy,
    SigningKey,
    ath_of,
    bound,
    check_delegate,
    check_holder,
    check_scheme,
    generate_private_key,
    hand_off_binding,
    htu_of,
    jkt_of,
    make_proof,
    service_binding,
    signing_key_of,
    verify_proof,
)

NOW = 1_800_000_000
# The order of P-256: an ES256 signature (r, s) has the twin (r, n - s).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
URL = "https://aws.example:8443/ec2/tags"
TOKEN = "header.payload.signature"
POLICY = ProofPolicy(max_age=60, leeway=5)


def key(alg: str = "ES256") -> SigningKey:
    return signing_key_of(generate_private_key(alg), alg)


KEY = key()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_proof(header: dict[str, Any], claims: dict[str, Any], signer: SigningKey = KEY) -> str:
    """A proof built by hand: any header, any claims, signed by ``signer``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = get_default_algorithms()[signer.alg].sign(signing_input.encode(), signer.private)
    return f"{signing_input}.{b64(signature)}"


def public_jwk(signer: SigningKey = KEY) -> dict[str, Any]:
    return {k: v for k, v in signer.public.jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}


def good_header(**overrides: Any) -> dict[str, Any]:
    header = {"typ": "dpop+jwt", "alg": KEY.alg, "jwk": public_jwk()}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


def good_claims(**overrides: Any) -> dict[str, Any]:
    claims = {"jti": "proof-jti-0001", "htm": "POST", "htu": URL, "iat": NOW,
              "ath": ath_of(TOKEN)}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def verify(proof: object, *, method: str = "POST", url: str = URL, token: str | None = TOKEN,
           now: int = NOW, nonce_ok: Any = None) -> Proof:
    return verify_proof(proof, ProofCheck(method, url, access_token=token, nonce_ok=nonce_ok),
                        POLICY, now=now)


def refused(proof: object, reason: str, error: type[OAuthError] = InvalidDPoPProof,
            **kw: Any) -> None:
    with pytest.raises(error) as raised:
        verify(proof, **kw)
    assert type(raised.value) is error
    assert raised.value.reason == reason, raised.value.message


# -- a valid proof -------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_a_proof_made_here_verifies_and_names_its_key(alg: str) -> None:
    signer = key(alg)
    proof = make_proof(signer, method="post", url=URL, now=NOW, access_token=TOKEN)
    verified = verify(proof)
    assert verified.jkt == jkt_of(signer.public)
    assert verified.iat == NOW
    assert verified.replay_key == f"dpop:{verified.jkt}:{verified.jti}"


def test_each_proof_has_its_own_jti() -> None:
    first, second = (verify(make_proof(KEY, method="POST", url=URL, now=NOW,
                                       access_token=TOKEN)) for _ in range(2))
    assert first.jti != second.jti


def test_the_header_carries_only_public_members_of_the_key() -> None:
    proof = make_proof(KEY, method="GET", url=URL, now=NOW)
    header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
    assert header["typ"] == "dpop+jwt"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}


def test_a_high_s_es256_proof_is_accepted_its_replay_is_judged_by_jti() -> None:
    proof = make_proof(KEY, method="POST", url=URL, now=NOW, access_token=TOKEN)
    head, body, sig = proof.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    s = P256_ORDER - int.from_bytes(raw[32:], "big")
    twin = f"{head}.{body}.{b64(raw[:32] + s.to_bytes(32, 'big'))}"
    assert verify(twin).jti == verify(proof).jti


# -- shape and header ----------------------------------------------------------------------------

@pytest.mark.parametrize("proof", [None, 7, "", "a.b", "a.b.c.d", "x" * 5000, "@@.@@.@@"])
def test_what_is_not_a_compact_jwt_is_malformed(proof: object) -> None:
    refused(proof, "dpop_proof_malformed")


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "DPOP+JWT"])
def test_the_typ_must_be_dpop_jwt(typ: str | None) -> None:
    refused(raw_proof(good_header(typ=typ), good_claims()), "dpop_wrong_typ")


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", None])
def test_only_asymmetric_algorithms_on_the_list(alg: str | None) -> None:
    refused(raw_proof(good_header(alg=alg), good_claims()), "dpop_alg_refused")


@pytest.mark.parametrize("extra", [{"jku": "https://evil.example/jwks"}, {"x5c": ["AAAA"]},
                                   {"x5u": "https://evil.example/c"}, {"crit": ["exp"]}])
def test_a_header_naming_another_key_or_a_crit_extension_is_refused(extra: dict[str, Any]) -> None:
    refused(raw_proof(good_header(**extra), good_claims()), "dpop_header_refused")


def test_a_proof_without_a_jwk_is_refused() -> None:
    refused(raw_proof(good_header(jwk=None), good_claims()), "dpop_jwk_invalid")


def test_a_jwk_with_private_material_is_refused() -> None:
    private = {**public_jwk(), "d": "AAAA"}
    refused(raw_proof(good_header(jwk=private), good_claims()), "dpop_jwk_private")


@pytest.mark.parametrize("jwk", [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
                                 {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC"}, "a string"])
def test_a_jwk_that_is_no_usable_public_key_is_refused(jwk: object) -> None:
    reason = "dpop_jwk_private" if isinstance(jwk, dict) and "k" in jwk else "dpop_jwk_invalid"
    refused(raw_proof(good_header(jwk=jwk), good_claims()), reason)


def test_a_jwk_of_another_kind_than_the_alg_is_refused() -> None:
    rsa = key("RS256")
    refused(raw_proof(good_header(alg="ES256", jwk=public_jwk(rsa)), good_claims()),
            "dpop_jwk_invalid")


def test_a_proof_signed_by_another_key_than_its_jwk_is_refused() -> None:
    refused(raw_proof(good_header(), good_claims(), signer=key()), "dpop_bad_signature")


# -- claims --------------------------------------------------------------------------------------

@pytest.mark.parametrize("claims", [
    good_claims(jti=None), good_claims(htm=None), good_claims(htu=None), good_claims(iat=None),
    good_claims(iat=True), good_claims(iat="1800000000"), good_claims(jti="short"),
    good_claims(jti=12345678), good_claims(htm=["POST"]), good_claims(iat=10 ** 400),
    good_claims(iat=-(10 ** 400)), good_claims(iat=2 ** 53)])
def test_jti_htm_htu_and_a_numeric_iat_are_required(claims: dict[str, Any]) -> None:
    """A 400-digit iat is no time: refused, not an OverflowError (a 500) while comparing it."""
    refused(raw_proof(good_header(), claims), "dpop_claims_invalid")


def test_an_es256_signature_whose_s_is_past_the_curve_order_is_a_bad_signature() -> None:
    """No key needed to send one: it must be refused as what it is, never crash the check."""
    header, claims, _ = raw_proof(good_header(), good_claims()).split(".")
    r = (1).to_bytes(32, "big")
    for s in (b"\xff" * 32, P256_ORDER.to_bytes(32, "big")):
        signature = b64(r + s)
        refused(f"{header}.{claims}.{signature}", "dpop_bad_signature")


def test_a_proof_for_another_method_is_refused() -> None:
    refused(raw_proof(good_header(), good_claims(htm="GET")), "dpop_htm_mismatch")


@pytest.mark.parametrize("htu", ["https://aws.example:8443/ec2/other",
                                 "https://other.example:8443/ec2/tags",
                                 "http://aws.example:8443/ec2/tags",
                                 "https://aws.example/ec2/tags", "not a url"])
def test_a_proof_for_another_url_is_refused(htu: str) -> None:
    refused(raw_proof(good_header(), good_claims(htu=htu)), "dpop_htu_mismatch")


@pytest.mark.parametrize("htu", ["https://AWS.example:8443/ec2/tags?x=1",
                                 "HTTPS://aws.example:8443/ec2/tags#frag"])
def test_htu_ignores_query_fragment_and_the_case_of_scheme_and_host(htu: str) -> None:
    assert verify(raw_proof(good_header(), good_claims(htu=htu))).jkt == jkt_of(KEY.public)


def test_the_default_port_is_the_same_url() -> None:
    assert htu_of("https://a.example:443/p") == htu_of("https://a.example/p") \
        == "https://a.example/p"
    assert htu_of("http://a.example") == "http://a.example/"
    assert htu_of("ftp://a.example/p") is None


def test_a_proof_from_the_future_beyond_the_leeway_is_refused() -> None:
    refused(raw_proof(good_header(), good_claims(iat=NOW + 6)), "dpop_iat_in_future")
    assert verify(raw_proof(good_header(), good_claims(iat=NOW + 5)))


def test_a_proof_older_than_the_window_is_refused() -> None:
    refused(raw_proof(good_header(), good_claims(iat=NOW - 61)), "dpop_proof_too_old")
    assert verify(raw_proof(good_header(), good_claims(iat=NOW - 60)))


def test_a_proof_without_ath_is_refused_with_a_token() -> None:
    refused(raw_proof(good_header(), good_claims(ath=None)), "dpop_ath_missing")
    assert verify(raw_proof(good_header(), good_claims(ath=None)), token=None)


def test_a_proof_for_another_token_is_refused() -> None:
    refused(raw_proof(good_header(), good_claims(ath=ath_of("another.token.x"))),
            "dpop_ath_mismatch")


def test_ath_is_the_base64url_sha256_of_the_token() -> None:
    # RFC 9449 section 7.1's example: the token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert ath_of("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == \
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


# -- the server's nonce ----------------------------------------------------------------------------

def test_a_proof_without_the_nonce_asked_for_is_use_dpop_nonce() -> None:
    issuer = NonceIssuer(secret=b"s" * 32)
    check = lambda n: issuer.accepts(n, now=NOW)
    refused(raw_proof(good_header(), good_claims()), "dpop_nonce_missing", UseDPoPNonce,
            nonce_ok=check)
    stale = issuer.current(now=NOW - 300)
    refused(raw_proof(good_header(), good_claims(nonce=stale)), "dpop_nonce_stale",
            UseDPoPNonce, nonce_ok=check)
    fresh = issuer.current(now=NOW)
    assert verify(raw_proof(good_header(), good_claims(nonce=fresh)), nonce_ok=check)


def test_a_nonce_lives_its_lifetime_and_is_ours_only() -> None:
    issuer = NonceIssuer(secret=b"s" * 32, lifetime=120, step=30)
    nonce = issuer.current(now=NOW)
    assert NOW % 30 == 0 and issuer.current(now=NOW + 29) == nonce  # one nonce a step
    assert issuer.accepts(nonce, now=NOW + 90)
    assert not issuer.accepts(nonce, now=NOW + 200)
    assert not issuer.accepts(issuer.current(now=NOW + 60), now=NOW)  # a step still to come
    assert not NonceIssuer(secret=b"t" * 32).accepts(nonce, now=NOW)
    for garbage in (None, 5, "", "!!!", "A" * 65, nonce[:-2]):
        assert not issuer.accepts(garbage, now=NOW)


# -- holder and binding rules ------------------------------------------------------------------------

def claims(jkt: str | None) -> AccessClaims:
    return AccessClaims(
        iss="https://as", sub="user:sam", aud="https://aws", client_id="agent:cleanup",
        scope="urn:infra:infrastructure:clean", iat=NOW, exp=NOW + 60, jti="jti-00000001",
        ctx=Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                    commit="9f2c1e7", run_id="run-1"),
        user_version=0, registry_epoch="epoch-0001",
        cnf=Confirmation(jkt=jkt) if jkt else None)


def test_a_bound_token_needs_a_proof_by_its_key() -> None:
    proof = verify(make_proof(KEY, method="POST", url=URL, now=NOW, access_token=TOKEN))
    check_holder(claims(None), None)
    check_holder(claims(proof.jkt), proof)
    with pytest.raises(InvalidDPoPProof) as missing:
        check_holder(claims(proof.jkt), None)
    assert missing.value.reason == "dpop_proof_missing"
    with pytest.raises(InvalidDPoPProof) as other:
        check_holder(claims(jkt_of(key().public)), proof)
    assert other.value.reason == "dpop_key_mismatch"


@pytest.mark.parametrize(("bound", "scheme", "unbound_ok", "reason"), [
    (True, "bearer", True, "dpop_bound_token_as_bearer"),
    (True, "basic", True, "dpop_bound_token_as_bearer"),
    (False, "dpop", True, "dpop_token_not_bound"),
    (False, "dpop", False, "dpop_token_not_bound"),
    (False, "bearer", False, "dpop_binding_required"),
])
def test_a_token_is_refused_under_the_wrong_scheme(bound: bool, scheme: str, unbound_ok: bool,
                                                    reason: str) -> None:
    with pytest.raises(DPoPRefusal) as refused:
        check_scheme(claims(jkt_of(KEY.public) if bound else None), scheme,
                     unbound_ok=unbound_ok)
    assert (refused.value.code, refused.value.status, refused.value.reason) == (
        "invalid_token", 401, reason)


def test_a_token_is_taken_under_its_scheme() -> None:
    check_scheme(claims(jkt_of(KEY.public)), "dpop", unbound_ok=False)
    check_scheme(claims(None), "bearer", unbound_ok=True)


def directory(dpop: str | None) -> Directory:
    service: dict[str, Any] = {"scopes": ["urn:infra:infrastructure:clean"]}
    if dpop is not None:
        service["dpop"] = dpop
    return Directory.model_validate({"services": {"aws": service}})


def test_a_service_token_is_bound_to_the_proof_key_or_refused_without_one() -> None:
    proof = verify(make_proof(KEY, method="POST", url=URL, now=NOW, access_token=TOKEN))
    assert service_binding(directory(None), "aws", proof, default=True) == proof.jkt
    with pytest.raises(InvalidDPoPProof) as raised:
        service_binding(directory(None), "aws", None, default=True)
    assert raised.value.reason == "dpop_proof_required"
    assert service_binding(directory("optional"), "aws", None, default=True) is None
    assert service_binding(directory(None), "aws", None, default=False) is None
    with pytest.raises(InvalidDPoPProof):
        service_binding(directory("required"), "aws", None, default=False)
    with pytest.raises(InvalidDPoPProof):  # a service the directory does not name
        service_binding(directory(None), None, None, default=False)


def test_a_hand_off_is_bound_to_the_next_agents_registered_key() -> None:
    jkt, other = jkt_of(KEY.public), jkt_of(key().public)
    assert hand_off_binding(frozenset({jkt}), default=True) == jkt
    assert hand_off_binding(frozenset({jkt}), default=False) is None
    assert hand_off_binding(frozenset(), default=True) is None  # no key registered yet
    assert hand_off_binding(frozenset({jkt, other}), default=True) is None  # one per host


def hand_off(jkt: str | None = None) -> AccessClaims:
    return claims(jkt).model_copy(update={"may_act": MayAct(sub="agent:argocd")})


def test_an_unbound_hand_off_needs_a_proof_by_one_of_the_agents_registered_keys() -> None:
    proof = verify(make_proof(KEY, method="POST", url=URL, now=NOW, access_token=TOKEN))
    other = jkt_of(key().public)
    asked: list[int] = []

    def registered(*jkts: str) -> Any:
        return lambda: asked.append(1) or frozenset(jkts)

    check_delegate(hand_off(), proof, registered(proof.jkt), default=True)
    check_delegate(hand_off(), proof, registered(other, proof.jkt), default=True)
    for subject, proof_, jkts, reason in (
            (hand_off(), proof, (), "dpop_key_not_registered"),
            (hand_off(), None, (proof.jkt,), "dpop_proof_missing"),
            (hand_off(), proof, (other,), "dpop_key_mismatch")):
        with pytest.raises(InvalidDPoPProof) as raised:
            check_delegate(subject, proof_, registered(*jkts), default=True)
        assert raised.value.reason == reason
    asked.clear()
    check_delegate(hand_off(), None, registered(), default=False)  # binding off
    check_delegate(hand_off(proof.jkt), proof, registered(), default=True)  # cnf decides
    check_delegate(claims(None), None, registered(), default=True)  # not a hand-off
    assert asked == []  # the registry is asked only for an unbound hand-off


def test_bound_sets_cnf_and_nothing_else() -> None:
    grant = Grant(claims=claims(None), dropped=("x",))
    jkt = jkt_of(KEY.public)
    assert bound(grant, None) is grant
    new = bound(grant, jkt)
    assert new.claims.cnf == Confirmation(jkt=jkt)
    assert new.claims.model_copy(update={"cnf": None}) == grant.claims
    assert new.dropped == ("x",)
