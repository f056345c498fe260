"""Properties: delegation only narrows, lifetimes only shrink, and no single-character change to a
valid token gets past the verifier."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import InvalidRequest, InvalidScope, InvalidTarget, InvalidToken
from orchestrator.identity import (
    AccessClaims,
    Directory,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    decide,
    mint,
)
from orchestrator.keystore import KeyRing

from .conftest import ALL_ALGS, ISSUER, NOW, SERVICES, Authority, make_issuance

PROPERTY = settings(max_examples=200, deadline=None)
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory, directory: Directory) -> Authority:
    ring = KeyRing.open(tmp_path_factory.mktemp("keys"), "ES256", now=NOW)
    return Authority(ring=ring, directory=directory, issuance=make_issuance(),
                     policy=VerifierPolicy(issuer=ISSUER, allowed_algs=ALL_ALGS))


@pytest.fixture(scope="module")
def hops(authority: Authority) -> list[tuple[VerifiedToken, str]]:
    """Each hand-off token of the chain with the agent that may exchange it."""
    root, to_argocd, to_cleanup, _ = authority.chain_to_aws()
    return [(root, "agent:infrabot"), (to_argocd, "agent:argocd"), (to_cleanup, "agent:cleanup")]


@pytest.fixture(scope="module")
def universe(directory: Directory) -> list[str]:
    scopes = {s for u in directory.users.values() for s in u.permissions}
    scopes |= {s for a in directory.agents.values() for s in a.allowed_scopes}
    return sorted(scopes | {"urn:infra:secrets:read", "urn:infra:infrastructure:destroy"})


@PROPERTY
@given(data=st.data())
def test_decide_never_widens(authority: Authority, hops: list[tuple[VerifiedToken, str]],
                             universe: list[str], data: st.DataObject) -> None:
    subject, actor = data.draw(st.sampled_from(hops))
    target = data.draw(st.one_of(
        st.builds(lambda url: {"resource": url}, st.sampled_from(sorted(SERVICES))),
        st.builds(lambda agent: {"audience": agent}, st.sampled_from(sorted(
            authority.directory.agents)))))
    requested = data.draw(st.none() | st.frozensets(st.sampled_from(universe), min_size=1))
    request = authority.request(subject, actor, scopes=requested, **target)
    try:
        granted = decide(request, authority.directory, authority.issuance, now=NOW).claims
    except (InvalidScope, InvalidTarget, InvalidRequest):
        return
    assert granted.scopes <= subject.claims.scopes
    assert granted.scopes <= frozenset(authority.directory.agents[actor].allowed_scopes)
    if requested is not None:
        assert granted.scopes == requested
    assert granted.sub == subject.claims.sub
    assert granted.chain()[1:] == subject.claims.chain()


@PROPERTY
@given(elapsed=st.integers(min_value=0, max_value=599), ttl=st.integers(min_value=1, max_value=900))
def test_exp_never_extends(authority: Authority, hops: list[tuple[VerifiedToken, str]],
                           elapsed: int, ttl: int) -> None:
    subject, actor = hops[0]
    now = subject.claims.iat + elapsed
    issuance = make_issuance(ttl=ttl)
    request = authority.request(subject, actor, audience="agent:argocd")
    claims = decide(request, authority.directory, issuance, now=now).claims
    assert claims.iat == now
    assert claims.exp == min(now + ttl, subject.claims.exp)
    assert claims.exp <= subject.claims.exp


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory,
           authority: Authority) -> dict[str, tuple[str, KeyRing]]:
    """A valid token signed with each allowed algorithm, and the ring that signed it."""
    claims = AccessClaims.model_validate(authority.payload())
    out = {}
    for alg in ALL_ALGS:
        ring = KeyRing.open(tmp_path_factory.mktemp(alg), alg, now=NOW)
        out[alg] = (mint(claims, ring.current), ring)
    return out


def _verify(authority: Authority, ring: KeyRing, token: str) -> None:
    TokenVerifier(ring.jwks(), authority.policy).verify(token, audience=ISSUER, now=NOW)


@PROPERTY
@given(data=st.data())
def test_changing_any_single_character_is_refused(
        authority: Authority, tokens: dict[str, tuple[str, KeyRing]], data: st.DataObject) -> None:
    token, ring = tokens[data.draw(st.sampled_from(ALL_ALGS))]
    _verify(authority, ring, token)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    original = token[position]
    replacement = data.draw(st.one_of(
        st.sampled_from(BASE64URL + ".=+/ "),
        st.integers(min_value=0, max_value=6).map(lambda bit: chr(ord(original) ^ (1 << bit))),
    ).filter(lambda c: c != original))
    forged = token[:position] + replacement + token[position + 1:]
    with pytest.raises(InvalidToken):
        _verify(authority, ring, forged)
