"""A small random world for the delegation properties: a directory of agents that hand off in a
line, a user, services and the context rule, built by hypothesis; plus a real key ring to mint
and verify with (a :class:`~orchestrator.identity.VerifiedToken` only comes from the verifier).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from orchestrator.identity import (
    AccessClaims,
    Context,
    Directory,
    Issuance,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    mint,
)
from orchestrator.keystore import KeyRing

NOW = 1_764_400_000
ISSUER = "http://127.0.0.1:8700"
ALGS = ("ES256", "RS256", "EdDSA")
SCOPES = tuple(f"urn:infra:{area}:{verb}" for area in ("mon", "repo", "infra", "incident")
               for verb in ("read", "write", "tag", "clean"))
SERVICE_URLS = {"http://127.0.0.1:9001": "svc0", "http://127.0.0.1:9002": "svc1"}
CONTEXTS = (("prod", "ci_pipeline"), ("prod", "manual"), ("staging", "manual"))

scope_sets = st.frozensets(st.sampled_from(SCOPES))


@st.composite
def wide_scope_sets(draw: st.DrawFn) -> frozenset[str]:
    """Most of the scopes (each kept with probability 3/4): sets that overlap, so chains grow
    several hops before narrowing empties them."""
    keep = draw(st.lists(st.sampled_from((True, True, True, False)), min_size=len(SCOPES),
                         max_size=len(SCOPES)))
    return frozenset(s for s, kept in zip(SCOPES, keep, strict=True) if kept)


@dataclass(frozen=True)
class World:
    directory: Directory
    agents: tuple[str, ...]  # in hand-off order
    user: str
    ctx: Context


@st.composite
def worlds(draw: st.DrawFn, max_agents: int = 6) -> World:
    count = draw(st.integers(min_value=1, max_value=max_agents) | st.just(max_agents))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), min_size=count,
                          max_size=count, unique=True))
    agents = tuple(f"agent:{name}" for name in names)
    environment, trigger = draw(st.sampled_from(CONTEXTS))
    directory = Directory.model_validate({
        "users": {"user:u": {"permissions": sorted(draw(wide_scope_sets()))}},
        "agents": {agent: {"allowed_scopes": sorted(draw(wide_scope_sets())),
                           "hands_off_to": list(agents[i + 1:i + 2])}
                   for i, agent in enumerate(agents)},
        "clients": {"client:orchestrator": {"trusted": True}},
        "services": {name: {"scopes": sorted(draw(wide_scope_sets()))}
                     for name in SERVICE_URLS.values()},
        "context_rules": [{"environment": "prod", "require_trigger": "ci_pipeline",
                           "applies_to": "writes"}],
    })
    ctx = Context(trigger=trigger, environment=environment, repository="acme/service-x",
                  commit="9f2c1e7", run_id="run-0001")
    return World(directory, agents, "user:u", ctx)


def issuance(ttl: int, max_depth: int = 16) -> Issuance:
    return Issuance(issuer=ISSUER, services=dict(SERVICE_URLS), ttl=ttl, max_depth=max_depth,
                    revocation_url=f"{ISSUER}/revoke", log_url=f"{ISSUER}/audit")


def policy(max_depth: int = 16) -> VerifierPolicy:
    return VerifierPolicy(issuer=ISSUER, allowed_algs=ALGS, max_depth=max_depth)


def issue(ring: KeyRing, claims: AccessClaims, *, now: int) -> VerifiedToken:
    """Mint and verify (the only way to a VerifiedToken); the verified claims are the same."""
    verified = TokenVerifier(ring.jwks(), policy()).verify(mint(claims, ring.current),
                                                           audience=claims.aud, now=now)
    assert verified.claims == claims
    return verified
