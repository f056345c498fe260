"""Properties of the ``act`` chain's shape: nesting actors one hop at a time and reading them
back round-trips, through the claims model, JSON, and a signed token, for random chains; the
verifier refuses exactly the chains that are too deep, repeat an actor, or put a user where an
agent must be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InvalidToken
from orchestrator.identity import AccessClaims, Actor, TokenVerifier, act_nesting, mint, nest
from orchestrator.keystore import KeyRing

from ._world import ISSUER, NOW, policy

PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
agent_ids = st.from_regex(r"agent:[a-z0-9][a-z0-9_.-]{0,12}", fullmatch=True)
user_ids = st.from_regex(r"user:[a-z0-9][a-z0-9_.-]{0,12}", fullmatch=True)
MAX_NESTING = 16  # orchestrator.identity._claims.MAX_ACT_NESTING


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.open(Path(tmp_path_factory.mktemp("ring")), "ES256", now=NOW)


def nested(actors: list[str]) -> Actor | None:
    """The ``act`` claim after each of ``actors`` acted in turn (first acted first)."""
    act: Actor | None = None
    for actor in actors:
        act = nest(actor, act)
    return act


def claims_with(user: str, actors: list[str]) -> AccessClaims:
    return AccessClaims(iss=ISSUER, sub=user, aud=ISSUER, client_id=actors[-1] if actors
                        else "client:orchestrator", scope="urn:infra:repo:read", iat=NOW,
                        exp=NOW + 600, jti="jti-shape-0001", act=nested(actors),
                        ctx={"trigger": "ci_pipeline", "environment": "prod",
                             "repository": "acme/service-x", "commit": "9f2c1e7",
                             "run_id": "run-0001"}, user_version=0,
                        registry_epoch="epoch-shape-0001")


@PROPERTY
@given(user=user_ids, actors=st.lists(agent_ids, max_size=20))
def test_nesting_then_reading_round_trips(user: str, actors: list[str]) -> None:
    claims = claims_with(user, actors)
    assert claims.actors == actors[::-1]  # current first, least recent deepest
    assert claims.chain() == [*actors[::-1], user]
    assert claims.current_actor == (actors[-1] if actors else None)
    assert claims.depth == len(actors)
    raw = claims.model_dump(mode="json", exclude_none=True)
    assert act_nesting(raw.get("act")) == min(len(actors), MAX_NESTING + 1)
    assert AccessClaims.model_validate(json.loads(json.dumps(raw))) == claims
    assert AccessClaims.model_validate_json(claims.model_dump_json()) == claims


@PROPERTY
@given(user=user_ids, actors=st.lists(agent_ids, max_size=20),
       max_depth=st.integers(min_value=1, max_value=16))
def test_a_signed_chain_verifies_back_or_is_refused_for_its_shape(
        ring: KeyRing, user: str, actors: list[str], max_depth: int) -> None:
    claims = claims_with(user, actors)
    token = mint(claims, ring.current)
    verifier = TokenVerifier(ring.jwks(), policy(max_depth))
    if len(actors) > MAX_NESTING or (len(set(actors)) == len(actors)
                                     and len(actors) > max_depth):
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(token, audience=ISSUER, now=NOW)
        assert refused.value.reason == "max_depth_exceeded"
    elif len(set(actors)) != len(actors):
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(token, audience=ISSUER, now=NOW)
        assert refused.value.reason == "chain_cycle"
    else:
        verified = verifier.verify(token, audience=ISSUER, now=NOW)
        assert verified.claims == claims
        assert verified.claims.chain() == [*actors[::-1], user]


@PROPERTY
@given(user=user_ids, actors=st.lists(agent_ids, min_size=1, max_size=4, unique=True),
       data=st.data())
def test_a_user_anywhere_in_act_is_refused_as_inverted(
        ring: KeyRing, user: str, actors: list[str], data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(actors) - 1))
    intruder = data.draw(user_ids)
    shaped = [*actors[:position], intruder, *actors[position + 1:]]
    token = mint(claims_with(user, actors).model_copy(update={"act": nested(shaped)}),
                 ring.current)
    with pytest.raises(InvalidToken) as refused:
        TokenVerifier(ring.jwks(), policy()).verify(token, audience=ISSUER, now=NOW)
    assert refused.value.reason == "inverted_chain"
