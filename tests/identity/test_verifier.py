"""The verifier, rule by rule: what it accepts at each boundary and the reason it refuses with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from orchestrator.errors import InvalidToken, Unavailable
from orchestrator.identity import (
    TYP,
    AccessClaims,
    CachedJWKS,
    JWKSet,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    check_chain,
    mint,
)
from orchestrator.keystore import KeyRing

from ._twins import twin
from .conftest import ALL_ALGS, AWS, DATADOG, ISSUER, NOW, Authority


def refused(authority: Authority, token: object, reason: str, *, audience: str = ISSUER,
            now: int = NOW, verifier: TokenVerifier | None = None) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        (verifier or authority.verifier).verify(token, audience=audience, now=now)
    assert info.value.code == "invalid_token"
    assert info.value.status == 401
    assert info.value.reason == reason
    return info.value


def chain_act(*actors: str) -> dict[str, Any] | None:
    """``act`` for actors given current first."""
    act: dict[str, Any] | None = None
    for actor in reversed(actors):
        act = {"sub": actor, **({"act": act} if act else {})}
    return act


# --- acceptance ----------------------------------------------------------------------------------

def test_a_minted_token_verifies_to_its_claims(authority: Authority) -> None:
    claims = AccessClaims.model_validate(authority.payload())
    verified = authority.verify(mint(claims, authority.key))
    assert verified.claims == claims
    assert verified.kid == authority.key.kid
    assert verified.size == len(mint(claims, authority.key))


def test_minted_header_is_typ_alg_kid_only(authority: Authority) -> None:
    import jwt

    token = mint(AccessClaims.model_validate(authority.payload()), authority.key)
    assert jwt.get_unverified_header(token) == {
        "typ": TYP, "alg": authority.key.alg, "kid": authority.key.kid}


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_every_allowed_algorithm_verifies(tmp_path: Path, authority: Authority, alg: str) -> None:
    ring = KeyRing.open(tmp_path / alg, alg, now=NOW)
    verifier = TokenVerifier(ring.jwks(), authority.policy)
    token = mint(AccessClaims.model_validate(authority.payload()), ring.current)
    assert verifier.verify(token, audience=ISSUER, now=NOW).kid == ring.current.kid


def test_a_high_s_twin_of_a_valid_access_token_is_refused_as_malleable(
        authority: Authority) -> None:
    token = mint(AccessClaims.model_validate(authority.payload()), authority.key)
    high = twin(token)
    assert high != token and twin(token, high=False) == token  # minted tokens are low-S
    refused(authority, high, "malleable_signature")
    assert authority.verify(token).claims.jti == "jti-root-0001"


def test_a_token_signed_high_s_elsewhere_has_only_its_low_s_form_accepted(
        authority: Authority) -> None:
    """Another ES256 signer (PyJWT here) need not normalise S; its low-S twin is accepted."""
    raw = jwt.encode(authority.payload(), authority.key.private, algorithm="ES256",
                     headers={"typ": TYP, "kid": authority.key.kid})
    refused(authority, twin(raw), "malleable_signature")
    assert authority.verify(twin(raw, high=False)).claims.sub == "user:sam"


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_typ_is_compared_case_insensitively_with_or_without_media_prefix(
        authority: Authority, typ: str) -> None:
    token = authority.sign(authority.payload(), header=authority.header(typ=typ))
    assert authority.verify(token).claims.sub == "user:sam"


def test_a_full_chain_verifies_and_reads_out_current_actor_first(authority: Authority) -> None:
    token = authority.sign(authority.payload(
        aud=AWS, act=chain_act("agent:cleanup", "agent:argocd", "agent:infrabot"), may_act=None))
    claims = authority.verify(token, audience=AWS).claims
    assert claims.chain() == ["agent:cleanup", "agent:argocd", "agent:infrabot", "user:sam"]
    assert claims.current_actor == "agent:cleanup"
    assert claims.depth == 3


def test_audience_may_be_a_set_the_caller_trusts(authority: Authority) -> None:
    token = authority.sign(authority.payload(aud=AWS))
    verified = authority.verifier.verify(token, audience=frozenset({AWS, DATADOG}), now=NOW)
    assert verified.claims.aud == AWS
    refused_here = frozenset({DATADOG, ISSUER})
    with pytest.raises(InvalidToken) as info:
        authority.verifier.verify(token, audience=refused_here, now=NOW)
    assert info.value.reason == "audience_mismatch"


def test_verified_token_is_made_only_by_the_verifier(authority: Authority) -> None:
    claims = AccessClaims.model_validate(authority.payload())
    with pytest.raises(TypeError):
        VerifiedToken(object(), claims, "kid", 10)


def test_verified_token_repr_shows_no_token(authority: Authority) -> None:
    token = mint(AccessClaims.model_validate(authority.payload()), authority.key)
    text = repr(authority.verify(token))
    assert "user:sam" in text
    assert token.split(".")[2] not in text


# --- size and shape ------------------------------------------------------------------------------

def test_max_bytes_comes_from_policy(authority: Authority) -> None:
    token = authority.sign(authority.payload())
    exact = TokenVerifier(authority.ring.jwks(), VerifierPolicy(
        issuer=ISSUER, allowed_algs=ALL_ALGS, max_bytes=len(token)))
    assert exact.verify(token, audience=ISSUER, now=NOW)
    smaller = TokenVerifier(authority.ring.jwks(), VerifierPolicy(
        issuer=ISSUER, allowed_algs=ALL_ALGS, max_bytes=len(token) - 1))
    refused(authority, token, "token_too_large", verifier=smaller)


# --- header --------------------------------------------------------------------------------------

def test_algorithm_allow_list_comes_from_policy_not_the_token(authority: Authority) -> None:
    token = authority.sign(authority.payload())
    rs_only = TokenVerifier(authority.ring.jwks(), VerifierPolicy(
        issuer=ISSUER, allowed_algs=("RS256",)))
    refused(authority, token, "alg_not_allowed", verifier=rs_only)


def test_keys_come_from_the_key_source_not_the_token(authority: Authority, tmp_path: Path) -> None:
    other = KeyRing.open(tmp_path / "other", "ES256", now=NOW)
    token = mint(AccessClaims.model_validate(authority.payload()), other.current)
    refused(authority, token, "unknown_kid")


# --- issuer, audience, time ----------------------------------------------------------------------

def test_issuer_must_match_exactly(authority: Authority) -> None:
    refused(authority, authority.sign(authority.payload(iss=ISSUER.upper())), "issuer_mismatch")


def test_audience_is_the_one_the_caller_asks_for(authority: Authority) -> None:
    token = authority.sign(authority.payload(aud=AWS))
    assert authority.verify(token, audience=AWS)
    refused(authority, token, "audience_mismatch", audience=DATADOG)
    refused(authority, token, "audience_mismatch", audience=ISSUER)


def test_issuer_is_checked_before_audience(authority: Authority) -> None:
    token = authority.sign(authority.payload(iss="http://evil", aud="http://evil"))
    refused(authority, token, "issuer_mismatch")


@pytest.mark.parametrize("delta", [0, 4])
def test_expiry_allows_the_leeway(authority: Authority, delta: int) -> None:
    token = authority.sign(authority.payload(iat=NOW - 600, exp=NOW))
    assert authority.verify(token, now=NOW + delta)


def test_expiry_refuses_at_exp_plus_leeway(authority: Authority) -> None:
    token = authority.sign(authority.payload(iat=NOW - 600, exp=NOW))
    refused(authority, token, "token_expired", now=NOW + 5)


def test_not_before_within_leeway_is_accepted(authority: Authority) -> None:
    assert authority.verify(authority.sign(authority.payload(nbf=NOW + 5)))
    refused(authority, authority.sign(authority.payload(nbf=NOW + 6)), "token_not_yet_valid")


def test_issued_at_within_leeway_is_accepted(authority: Authority) -> None:
    assert authority.verify(authority.sign(authority.payload(iat=NOW + 5, exp=NOW + 600)))
    refused(authority, authority.sign(authority.payload(iat=NOW + 6, exp=NOW + 600)),
            "token_not_yet_valid")


def test_lifetime_of_exactly_900_seconds_is_accepted(authority: Authority) -> None:
    assert authority.verify(authority.sign(authority.payload(exp=NOW + 900)))
    refused(authority, authority.sign(authority.payload(exp=NOW + 901)), "lifetime_too_long")


def test_leeway_comes_from_policy(authority: Authority) -> None:
    token = authority.sign(authority.payload(iat=NOW - 600, exp=NOW))
    strict = TokenVerifier(authority.ring.jwks(), VerifierPolicy(
        issuer=ISSUER, allowed_algs=ALL_ALGS, leeway=0))
    refused(authority, token, "token_expired", verifier=strict)


# --- required claims and the chain ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id",
                                  "ctx", "user_version", "registry_epoch"])
def test_every_required_claim_is_required(authority: Authority, name: str) -> None:
    refused(authority, authority.sign(authority.payload(**{name: None})), "missing_claim")


@pytest.mark.parametrize("name", ["nbf", "act", "may_act", "revocation_url", "log_url"])
def test_optional_claims_may_be_absent(authority: Authority, name: str) -> None:
    assert authority.verify(authority.sign(authority.payload(**{name: None})))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_chains_up_to_max_depth_are_accepted(authority: Authority, depth: int) -> None:
    actors = [f"agent:a{i}" for i in range(depth)]
    assert authority.verify(authority.sign(authority.payload(act=chain_act(*actors)))).claims.depth \
        == depth


def test_max_depth_comes_from_policy(authority: Authority) -> None:
    token = authority.sign(authority.payload(act=chain_act("agent:argocd", "agent:infrabot")))
    shallow = TokenVerifier(authority.ring.jwks(), VerifierPolicy(
        issuer=ISSUER, allowed_algs=ALL_ALGS, max_depth=1))
    refused(authority, token, "max_depth_exceeded", verifier=shallow)


def _claims(authority: Authority, **overrides: Any) -> AccessClaims:
    return AccessClaims.model_validate(authority.payload(**overrides))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sub": "agent:infrabot", "act": {"sub": "user:sam"}}, "inverted_chain"),
        ({"sub": "agent:infrabot"}, "inverted_chain"),
        ({"sub": "client:orchestrator"}, "invalid_subject"),
        ({"act": chain_act("agent:argocd", "user:alex")}, "inverted_chain"),
        ({"act": chain_act("client:orchestrator")}, "inverted_chain"),
        ({"act": chain_act("agent:argocd", "agent:argocd")}, "chain_cycle"),
        ({"act": chain_act("agent:a", "agent:b", "agent:c", "agent:d", "agent:e")},
         "max_depth_exceeded"),
    ],
)
def test_check_chain_refusals(authority: Authority, overrides: dict[str, Any],
                              reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        check_chain(_claims(authority, **overrides), max_depth=4)
    assert info.value.reason == reason


def test_check_chain_accepts_a_user_and_distinct_agents(authority: Authority) -> None:
    check_chain(_claims(authority, act=chain_act("agent:argocd", "agent:infrabot")), max_depth=2)


# --- remote key sets -----------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.calls = 0
        self.document: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.document if self.document is not None else self.ring.jwks().to_dict()


def test_cached_jwks_fetches_once_for_known_kids(ring: KeyRing) -> None:
    fetch = Fetcher(ring)
    keys = CachedJWKS(fetch, ALL_ALGS, FakeClock())
    for _ in range(3):
        assert keys.get(ring.current.kid) is not None
    assert fetch.calls == 1


def test_cached_jwks_refreshes_on_an_unknown_kid_after_rotation(ring: KeyRing) -> None:
    fetch, clock = Fetcher(ring), FakeClock()
    keys = CachedJWKS(fetch, ALL_ALGS, clock, min_refresh_seconds=5)
    assert keys.get(ring.current.kid) is not None
    new = ring.rotate(now=NOW + 1, keep_for_seconds=900)
    clock.now += 5
    assert keys.get(new.kid) is not None
    assert fetch.calls == 2


def test_cached_jwks_rate_limits_refreshes_for_unknown_kids(ring: KeyRing) -> None:
    fetch, clock = Fetcher(ring), FakeClock()
    keys = CachedJWKS(fetch, ALL_ALGS, clock, min_refresh_seconds=5)
    for _ in range(10):
        assert keys.get("unknown-kid") is None
    assert fetch.calls == 1
    clock.now += 5
    assert keys.get("unknown-kid") is None
    assert fetch.calls == 2


def test_cached_jwks_unknown_kid_refusal_through_the_verifier(
        authority: Authority, ring: KeyRing) -> None:
    verifier = TokenVerifier(CachedJWKS(Fetcher(ring), ALL_ALGS, FakeClock()), authority.policy)
    token = authority.sign(authority.payload(), header=authority.header(kid="gone"))
    refused(authority, token, "unknown_kid", verifier=verifier)


def test_a_malformed_published_key_set_is_unavailable_not_trusted(ring: KeyRing) -> None:
    fetch = Fetcher(ring)
    fetch.document = {"not": "a jwks"}
    with pytest.raises(Unavailable) as info:
        CachedJWKS(fetch, ALL_ALGS, FakeClock()).get(ring.current.kid)
    assert info.value.reason == "jwks_unavailable"


def test_an_unreachable_key_set_fails_closed(authority: Authority) -> None:
    def down() -> dict[str, Any]:
        raise Unavailable("key set unreachable", reason="jwks_unavailable")

    verifier = TokenVerifier(CachedJWKS(down, ALL_ALGS, FakeClock()), authority.policy)
    with pytest.raises(Unavailable):
        verifier.verify(authority.sign(authority.payload()), audience=ISSUER, now=NOW)


def test_cached_jwks_drops_keys_of_algorithms_not_allowed(ring: KeyRing) -> None:
    keys = CachedJWKS(Fetcher(ring), ("RS256",), FakeClock())
    assert keys.get(ring.current.kid) is None


def test_jwkset_is_a_key_source(ring: KeyRing) -> None:
    assert JWKSet.of([ring.current.public]).get(ring.current.kid) == ring.current.public


class FailingFetcher(Fetcher):
    """A fetcher whose publisher can be down (``Unavailable``) or answer garbage."""

    def __init__(self, ring: KeyRing) -> None:
        super().__init__(ring)
        self.down = False

    def __call__(self) -> dict[str, Any]:
        document = super().__call__()
        if self.down:
            raise Unavailable("key set unreachable", reason="jwks_unavailable")
        return document


def _unavailable(keys: CachedJWKS, kid: str) -> str:
    with pytest.raises(Unavailable) as info:
        keys.get(kid)
    return info.value.reason


def test_a_set_past_its_age_is_not_trusted_when_its_refresh_fails(ring: KeyRing) -> None:
    fetch, clock = FailingFetcher(ring), FakeClock()
    keys = CachedJWKS(fetch, ALL_ALGS, clock, min_refresh_seconds=30, max_age_seconds=300)
    assert keys.get(ring.current.kid) is not None
    fetch.down = True
    clock.now += 301
    assert _unavailable(keys, ring.current.kid) == "jwks_unavailable"
    clock.now += 1  # the old set was dropped, not renewed by the failed refresh
    assert _unavailable(keys, ring.current.kid) == "jwks_unavailable"
    clock.now += 298
    assert _unavailable(keys, ring.current.kid) == "jwks_unavailable"
    assert fetch.calls == 3  # tried again once min_refresh_seconds had passed, not per lookup
    fetch.down = False
    clock.now += 30
    assert keys.get(ring.current.kid) is not None


def test_a_failed_fetch_is_tried_again_at_most_once_per_interval(ring: KeyRing) -> None:
    fetch, clock = Fetcher(ring), FakeClock()
    fetch.document = {"not": "a jwks"}
    keys = CachedJWKS(fetch, ALL_ALGS, clock, min_refresh_seconds=30)
    for _ in range(20):
        assert _unavailable(keys, f"kid-{_}") == "jwks_unavailable"
    assert fetch.calls == 1
    fetch.document = None
    clock.now += 29
    assert _unavailable(keys, ring.current.kid) == "jwks_unavailable"
    clock.now += 1
    assert keys.get(ring.current.kid) is not None
    assert fetch.calls == 2


def test_a_fresh_set_keeps_its_keys_when_a_refresh_for_an_unknown_kid_fails(
        ring: KeyRing) -> None:
    fetch, clock = FailingFetcher(ring), FakeClock()
    keys = CachedJWKS(fetch, ALL_ALGS, clock, min_refresh_seconds=5, max_age_seconds=300)
    assert keys.get(ring.current.kid) is not None
    fetch.down = True
    clock.now += 10
    assert _unavailable(keys, "unknown-kid") == "jwks_unavailable"
    assert keys.get(ring.current.kid) is not None  # within its age: still the publisher's
    assert keys.get("unknown-kid") is None  # and no second fetch within the interval
    assert fetch.calls == 2
