"""Before anything runs: which steps of a workflow a user's run would be allowed, and why not.

:func:`preflight` replays a run's decisions with the pure identity core, in memory: the root grant
with :func:`~orchestrator.identity.decide_root` for a context of the given environment and
trigger, then per hop every step's exchange and the hand-off with
:func:`~orchestrator.identity.decide`, requesting exactly what the agents request. Tokens are
minted with a throw-away key only so that each decision gets the verified subject token it takes;
nothing is sent anywhere. Each refusal is explained in words from the same directory: the scopes
the user lacks, what the context rules forbid, what the agent may not hold, what was not handed
off, and a chain deeper than ``max_depth``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from orchestrator.catalog import CATALOG, service_names
from orchestrator.config import Settings
from orchestrator.errors import ConfigError, OAuthError
from orchestrator.identity import (
    AccessClaims,
    Context,
    Directory,
    ExchangeRequest,
    Grant,
    Issuance,
    JWKSet,
    SigningKey,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    decide,
    decide_root,
    generate_private_key,
    mint,
    signing_key_of,
)
from orchestrator.workflows import (
    Workflow,
    downstream_scopes,
    graph_order,
    longest_way,
    required_scopes,
)

Verdict = Literal["allow", "refuse", "not_reached"]
ORCHESTRATOR_CLIENT = "client:orchestrator"
_ALG = "ES256"


@dataclass(frozen=True)
class StepVerdict:
    """One exchange a run would make: a step (``action``) or a hand-off (``hand_off`` → agent)."""

    agent: str
    step: str
    scopes: tuple[str, ...]
    verdict: Verdict
    error: str | None = None
    reason: str | None = None
    causes: tuple[str, ...] = ()
    hand_off_to: str | None = None


@dataclass
class Preflight:
    workflow: str
    user: str
    environment: str
    trigger: str
    required: tuple[str, ...]
    user_lacks: tuple[str, ...]
    context_forbids: tuple[str, ...]
    root_granted: tuple[str, ...] = ()
    root_error: str | None = None
    root_reason: str | None = None
    depth: int = 0
    max_depth: int = 0
    steps: list[StepVerdict] = field(default_factory=list)

    @property
    def all_allowed(self) -> bool:
        return self.root_error is None and all(s.verdict == "allow" for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "all_allowed": self.all_allowed}


# Preflight replays decisions only: no registry is asked, so its tokens name none.
PREFLIGHT_EPOCH = "preflight"


@dataclass
class _Chain:
    """The decisions being replayed: directory, settings, clock and the throw-away key."""

    directory: Directory
    settings: Settings
    ctx: Context
    now: int
    key: SigningKey
    verifier: TokenVerifier

    def issuance(self, ttl: int) -> Issuance:
        services = {self.audience(n): n for n in service_names()}
        return Issuance(issuer=self.settings.issuer_url, services=services, ttl=ttl,
                        max_depth=self.settings.max_depth)

    def audience(self, service: str) -> str:
        """The service's audience. A declared service given no port (the OS picks one when it
        is served) gets a placeholder of its own: preflight never calls it, and two such
        services must not share one."""
        url = self.settings.service_url(service).rstrip("/")
        return f"{url}/{service}" if url.endswith(":0") else url

    def verified(self, claims: Any) -> VerifiedToken:
        return self.verifier.verify(mint(claims, self.key), audience=self.settings.issuer_url,
                                    now=self.now)


def preflight(workflow: Workflow, user: str, directory: Directory, settings: Settings, *,
              environment: str, trigger: str, now: int | None = None) -> Preflight:
    """What a run of ``workflow`` for ``user`` would be allowed to do; ConfigError for a user
    not in the directory."""
    if user not in directory.users:
        raise ConfigError(f"{user} is not a user in the directory (known: "
                          f"{', '.join(sorted(directory.users))})", reason="unknown_user")
    ctx = Context(trigger=trigger, environment=environment, repository="acme/preflight",
                  commit="0000000", run_id="preflight")
    chain = _chain(directory, settings, ctx, int(time.time()) if now is None else now)
    needed = required_scopes(workflow)
    held = set(directory.users[user].permissions)
    result = Preflight(
        workflow=workflow.name, user=user, environment=environment, trigger=trigger,
        required=tuple(needed), user_lacks=tuple(s for s in needed if s not in held),
        context_forbids=tuple(s for s in needed if not directory.context_permits(s, ctx)),
        depth=longest_way(workflow), max_depth=settings.max_depth)
    token: VerifiedToken | None = None
    try:
        grant = decide_root(user, needed, ctx, workflow.root_agent, directory,
                            chain.issuance(settings.root_token_ttl_seconds),
                            client=ORCHESTRATOR_CLIENT, user_version=0,
                            registry_epoch=PREFLIGHT_EPOCH, now=chain.now)
        token = chain.verified(grant.claims)
        result.root_granted = tuple(sorted(grant.claims.scopes))
    except OAuthError as exc:
        result.root_error, result.root_reason = exc.code, exc.reason
    result.steps = _hops(workflow, user, chain, token)
    return result


def _chain(directory: Directory, settings: Settings, ctx: Context, now: int) -> _Chain:
    key = signing_key_of(generate_private_key(_ALG), _ALG)
    policy = VerifierPolicy(issuer=settings.issuer_url, allowed_algs=(_ALG,),
                            leeway=settings.leeway_seconds, max_bytes=settings.max_token_bytes,
                            max_depth=settings.max_depth)
    return _Chain(directory, settings, ctx, now, key, TokenVerifier(JWKSet.of([key.public]),
                                                                    policy))


def _hops(workflow: Workflow, user: str, chain: _Chain,
          token: VerifiedToken | None) -> list[StepVerdict]:
    """Every exchange, agent by agent in graph order (every branch: a condition's outcome is
    not known before the run). After a refusal that agent's way stops: what follows on it is
    still decided (so later refusals show) but an allowed exchange there is ``not_reached``."""
    out: list[StepVerdict] = []
    root = workflow.root_agent
    tokens: dict[str, VerifiedToken | None] = {root: token}
    stops: dict[str, str | None] = {root: None if token is not None else "the root grant"}
    handed: dict[str, tuple[str, ...] | None] = {}  # agent -> the most it can be handed
    depth = {root: 1}

    def add(verdict: StepVerdict, stop: str | None) -> str | None:
        """Record ``verdict`` on a way stopped at ``stop``; the way's stop after it."""
        if stop is not None:
            verdict = replace(verdict, verdict="refuse" if verdict.verdict == "refuse"
                              else "not_reached",
                              causes=(f"not reached: the run stops at {stop}",
                                      *verdict.causes))
        elif verdict.verdict != "allow":
            step = (f"hand-off to {verdict.hand_off_to}" if verdict.step == "hand_off"
                    else verdict.step)
            stop = f"{verdict.agent} {step}"
        out.append(verdict)
        return stop

    for agent in graph_order(workflow):
        plan, token, stop = workflow.plan(agent), tokens.get(agent), stops.get(agent)
        causes = _Causes(chain, user, agent, depth[agent] - 1, handed.get(agent))
        for step in plan.steps:
            action = CATALOG[step.action]
            verdict, _ = _decide(chain, token, causes, step.action, (action.scope,),
                                 resource=chain.audience(action.service))
            stop = add(verdict, stop)
        held = set(token.claims.scopes) if token is not None else set()
        for edge in plan.edges:
            for target in (*edge.to, *((edge.join,) if edge.join else ())):
                downstream = downstream_scopes(workflow, agent, target)
                wanted = tuple([s for s in downstream if s in held] or downstream)
                handed[target] = _narrower(handed.get(agent), plan.hand_off_scopes)
                joined = tuple(t.claims for b in edge.to if target == edge.join
                               and (t := tokens.get(b)) is not None)
                verdict, grant = _decide(chain, token, causes, "hand_off", wanted,
                                         audience=target, joined=joined)
                stops[target] = add(verdict, stop)
                tokens[target] = chain.verified(grant.claims) if grant is not None else None
                depth[target] = depth[agent] + 1
    return out


def _narrower(current: tuple[str, ...] | None,
              explicit: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if explicit is None:
        return current
    return explicit if current is None else tuple(s for s in explicit if s in current)


def _decide(chain: _Chain, token: VerifiedToken | None, causes: _Causes, step: str,
            scopes: tuple[str, ...], *, resource: str | None = None,
            audience: str | None = None,
            joined: tuple[AccessClaims, ...] = ()) -> tuple[StepVerdict, Grant | None]:
    why = causes.of(scopes, audience)
    common: dict[str, Any] = {"agent": causes.agent, "step": step, "scopes": scopes,
                              "hand_off_to": audience}
    if token is None:
        reason = why[0][0] if why else None
        return StepVerdict(**common, verdict="refuse" if why else "not_reached", reason=reason,
                           causes=tuple(text for _, text in why)), None
    try:
        grant = decide(ExchangeRequest(subject=token, actor=causes.agent,
                                       scopes=frozenset(scopes), resource=resource,
                                       audience=audience, joined=joined),
                       chain.directory, chain.issuance(chain.settings.token_ttl_seconds),
                       now=chain.now)
    except OAuthError as exc:
        return StepVerdict(**common, verdict="refuse", error=exc.code, reason=exc.reason,
                           causes=tuple(text for _, text in why) or (exc.message,)), None
    return StepVerdict(**common, verdict="allow"), grant


@dataclass(frozen=True)
class _Causes:
    """Why a scope cannot reach one agent, in the directory's own terms."""

    chain: _Chain
    user: str
    agent: str
    index: int
    handed: tuple[str, ...] | None

    def of(self, scopes: tuple[str, ...], audience: str | None) -> list[tuple[str, str]]:
        d, ctx = self.chain.directory, self.chain.ctx
        entry = d.users[self.user]
        out: list[tuple[str, str]] = []
        if entry.disabled:
            out.append(("user_disabled", f"{self.user} is disabled"))
        if self.index + 1 > self.chain.settings.max_depth:
            limit = self.chain.settings.max_depth
            out.append(("max_depth_exceeded",
                        f"{self.agent} would be actor {self.index + 1} of at most {limit}"))
        holders = [self.agent] + ([audience] if audience in d.agents else [])
        for scope in scopes:
            if scope not in entry.permissions:
                out.append(("user_lacks_permission", f"{self.user} lacks {scope}"))
            if not d.context_permits(scope, ctx):
                where = f"{ctx.environment} when triggered by {ctx.trigger}"
                out.append(("context_forbidden", f"{scope} is not permitted in {where}"))
            for holder in holders:
                if scope not in d.agents[holder].allowed_scopes:
                    out.append(("actor_not_allowed", f"{holder} may not hold {scope}"))
            if self.handed is not None and scope not in self.handed:
                out.append(("not_handed_off", f"{scope} is not handed off to {self.agent}"))
        return out
