"""Properties of whole delegation chains (tests/identity/test_properties.py checks single hops of
the shipped directory): over random directories, users, contexts and chains of up to six agents,
each hop asking for a random subset of scopes (or none), after random delays and with random
lifetimes:

* the root grant is what the workflow needs ∩ what the user holds ∩ the context policy;
* every exchange grants exactly the set-theoretic rule: subject ∩ actor's allowed scopes ∩ the
  target's scopes ∩ the context policy when nothing is named; the named scopes when all are in
  it; ``invalid_scope`` otherwise. So scope never widens: each token's scopes are within its
  subject's, its actor's, its target's and the user's;
* expiry never extends: each token's ``exp`` is ``min(now + ttl, subject's exp)``, never later
  than any token up the chain;
* the chain only grows by the new actor, the principal and context never change, and every
  ancestor is listed, oldest first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InvalidRequest, InvalidScope
from orchestrator.identity import ExchangeRequest, VerifiedToken, decide, decide_root
from orchestrator.keystore import KeyRing

from ._world import (
    NOW,
    SCOPES,
    SERVICE_URLS,
    World,
    issuance,
    issue,
    scope_sets,
    wide_scope_sets,
    worlds,
)

EPOCH = "epoch-props-0001"
PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def mostly(usual: st.SearchStrategy[int], rare: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """``usual`` four times in five (so chains often grow deep), else ``rare``."""
    return st.integers(0, 4).flatmap(lambda n: rare if n == 0 else usual)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.open(Path(tmp_path_factory.mktemp("ring")), "ES256", now=NOW)


def expected_grantable(world: World, subject: VerifiedToken, actor: str,
                       target_scopes: frozenset[str]) -> frozenset[str]:
    d = world.directory
    return frozenset(s for s in subject.claims.scopes
                     if s in d.agents[actor].allowed_scopes and s in target_scopes
                     and d.context_permits(s, subject.claims.ctx))


@PROPERTY
@given(world=worlds(), data=st.data())
def test_a_random_chain_only_narrows_and_never_outlives_its_subject(
        ring: KeyRing, world: World, data: st.DataObject) -> None:
    d = world.directory
    needed = sorted(data.draw(wide_scope_sets() | scope_sets, label="needed"))
    now = NOW
    try:
        root = decide_root(world.user, needed, world.ctx, world.agents[0], d,
                           issuance(data.draw(st.integers(600, 900) | st.integers(1, 900),
                                              label="root_ttl")),
                           client="client:orchestrator", user_version=0,
                           registry_epoch=EPOCH, now=now)
    except InvalidScope:
        held = set(d.users[world.user].permissions)
        assert not [s for s in needed if s in held and d.context_permits(s, world.ctx)]
        return
    held = d.users[world.user].permissions
    assert list(root.claims.scopes) and root.claims.scopes == frozenset(
        s for s in needed if s in held and d.context_permits(s, world.ctx))
    assert set(root.dropped) == set(needed) - root.claims.scopes
    subject = issue(ring, root.claims, now=now)
    chain = [subject]

    for index, actor in enumerate(world.agents):
        now += data.draw(mostly(st.integers(0, 5), st.integers(0, 400)), label="delay")
        if now >= subject.claims.exp:
            event("stopped: subject expired")
            return  # the authorization server refuses an expired subject (token_expired)
        nxt = world.agents[index + 1] if index + 1 < len(world.agents) else None
        to_service = nxt is None or data.draw(st.integers(0, 3), label="to_service") == 0
        if to_service:
            url = data.draw(st.sampled_from(sorted(SERVICE_URLS)), label="service")
            target: dict[str, str] = {"resource": url}
            target_scopes = frozenset(d.services[SERVICE_URLS[url]].scopes)
        else:
            assert nxt is not None
            target = {"audience": nxt}
            target_scopes = frozenset(d.agents[nxt].allowed_scopes)
        grantable = expected_grantable(world, subject, actor, target_scopes)
        requested = data.draw(st.one_of(
            st.none(), st.none(), st.frozensets(st.sampled_from(sorted(grantable or SCOPES)),
                                                min_size=1),
            st.frozensets(st.sampled_from(SCOPES), min_size=1)), label="requested")
        ttl = data.draw(mostly(st.integers(120, 900), st.integers(1, 900)), label="ttl")
        request = ExchangeRequest(subject=subject, actor=actor, scopes=requested, **target)
        try:
            grant = decide(request, d, issuance(ttl), now=now)
        except InvalidScope as refused:
            event(f"stopped: {refused.reason}")
            if requested is None:
                assert not grantable and refused.reason == "no_grantable_scope"
            else:
                assert not requested <= grantable and refused.reason == "scope_not_grantable"
            return
        claims = grant.claims
        assert claims.scopes == (grantable if requested is None else requested)
        assert claims.scopes <= grantable
        for earlier in chain:  # never wider than anything up the chain, nor the user
            assert claims.scopes <= earlier.claims.scopes
            assert claims.exp <= earlier.claims.exp
        assert claims.scopes <= frozenset(held)
        assert claims.scopes <= frozenset(d.agents[actor].allowed_scopes)
        assert claims.exp == min(now + ttl, subject.claims.exp) and claims.iat == now
        assert claims.chain() == [actor, *subject.claims.chain()]
        assert (claims.sub, claims.ctx, claims.user_version, claims.registry_epoch) == \
            (world.user, world.ctx, subject.claims.user_version, EPOCH)
        assert claims.ancestors == tuple(t.claims.jti for t in chain)
        assert claims.may_act is None if to_service else claims.may_act.sub == nxt
        event(f"hops reached: {len(chain)}")
        if to_service:
            assert claims.aud == target["resource"]
            return
        subject = issue(ring, claims, now=now)
        chain.append(subject)


@settings(PROPERTY, max_examples=40)
@given(world=worlds(max_agents=3), data=st.data())
def test_a_hand_off_token_is_exchangeable_only_by_its_named_agent(
        ring: KeyRing, world: World, data: st.DataObject) -> None:
    """``may_act`` pins the next actor: any other agent, or the same one again, is refused."""
    d = world.directory
    try:
        root = decide_root(world.user, sorted(d.users[world.user].permissions), world.ctx,
                           world.agents[0], d, issuance(900), client="client:orchestrator",
                           user_version=0, registry_epoch=EPOCH, now=NOW)
    except InvalidScope:
        return
    subject = issue(ring, root.claims, now=NOW)
    outsider = data.draw(st.sampled_from([*world.agents[1:], "agent:stranger"]))
    if outsider == "agent:stranger":
        return  # not in the directory: refused as not_an_agent, covered in tests/identity
    with pytest.raises(InvalidRequest) as refused:
        decide(ExchangeRequest(subject=subject, actor=outsider, audience=world.agents[0]), d,
               issuance(600), now=NOW)
    assert refused.value.reason == "may_act_mismatch"
