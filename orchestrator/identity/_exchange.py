"""The exchange rules (DESIGN.md section 3) as pure functions.

:func:`decide` turns a verified subject token, an authenticated actor and an RFC 8693 request into
a :class:`Grant` or raises the RFC 8693 section 2.2.2 error. :func:`decide_root` computes the root
grant of a run as the reference article's ``filterScopes`` does. Neither does any I/O: the caller
passes the directory, the clock and the revocation verdict (already checked on the subject token).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from orchestrator.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget
from orchestrator.identity._claims import AccessClaims, Context, MayAct, nest
from orchestrator.identity._policy import Directory, User
from orchestrator.identity._scopes import filter_scopes, format_scopes, narrow
from orchestrator.identity._tokens import VerifiedToken


@dataclass(frozen=True)
class ExchangeRequest:
    """An RFC 8693 request after parsing, with the caller authenticated as ``actor``."""

    subject: VerifiedToken
    actor: str
    scopes: frozenset[str] | None = None
    resource: str | None = None
    audience: str | None = None
    # A join's hand-off (docs/graphs.md): the fork point's branch tokens, each a child of the
    # subject, named in the new token's ancestors so that revoking a branch revokes the join.
    joined: tuple[AccessClaims, ...] = ()


@dataclass(frozen=True)
class Issuance:
    """Where the issued token points: the issuer, and the services by base URL."""

    issuer: str
    services: dict[str, str]  # base URL -> service name
    ttl: int
    max_depth: int
    revocation_url: str | None = None
    log_url: str | None = None

    def log_url_for(self, jti: str) -> str | None:
        return f"{self.log_url}?jti={jti}" if self.log_url else None


@dataclass(frozen=True)
class Grant:
    claims: AccessClaims
    dropped: tuple[str, ...] = ()


def new_jti() -> str:
    return secrets.token_urlsafe(18)


def decide(request: ExchangeRequest, directory: Directory, issuance: Issuance, *,
           now: int) -> Grant:
    subject = request.subject.claims
    agent = directory.agents.get(request.actor)
    if agent is None:
        raise InvalidRequest(f"{request.actor} is not an agent that may act", reason="not_an_agent")
    _check_may_act(subject, request.actor)
    _check_chain_growth(subject, request.actor, issuance.max_depth)
    audience, may_act, target_scopes = _target(request, directory, issuance)
    grantable = narrow(subject.scopes, agent.allowed_scopes, target_scopes,
                       directory.context_allowed(subject.scopes, subject.ctx))
    scopes = _choose_scopes(request.scopes, grantable)
    joined = _joined(request, subject)
    jti = new_jti()
    claims = AccessClaims(
        iss=issuance.issuer, sub=subject.sub, aud=audience, client_id=request.actor,
        scope=format_scopes(scopes), iat=now, exp=min(now + issuance.ttl, subject.exp),
        jti=jti, act=nest(request.actor, subject.act), may_act=may_act, ctx=subject.ctx,
        user_version=subject.user_version, registry_epoch=subject.registry_epoch,
        ancestors=(*subject.ancestors, subject.jti, *joined),
        revocation_url=issuance.revocation_url, log_url=issuance.log_url_for(jti),
    )
    return Grant(claims=claims)


def _joined(request: ExchangeRequest, subject: AccessClaims) -> tuple[str, ...]:
    """The ``jti`` of every joined branch token: each must be a hand-off exchanged from this
    very subject token (a sibling branch of the same fork), for the same user and context.
    Joining only adds ancestors: it never widens what the new token may do."""
    if not request.joined:
        return ()
    if request.audience is None:
        raise InvalidRequest("joined_tokens only on a hand-off (audience)",
                             reason="join_needs_hand_off")
    for branch in request.joined:
        if (branch.sub != subject.sub or branch.ctx != subject.ctx
                or branch.ancestors != (*subject.ancestors, subject.jti)
                or branch.may_act is None):
            raise InvalidRequest("a joined token is not a branch handed off from the "
                                 "subject_token", reason="joined_not_a_branch")
    # A fan-out has two branches or more, each its own agent. Fewer would let the fork point
    # reach, through one branch's token, an agent only that branch's agent may hand off to.
    if len({branch.may_act.sub for branch in request.joined if branch.may_act}) < 2:
        raise InvalidRequest("a join names the tokens of every branch of its fan-out: two or "
                             "more, each for another agent", reason="join_needs_branches")
    return tuple(dict.fromkeys(branch.jti for branch in request.joined))


def _check_may_act(subject: AccessClaims, actor: str) -> None:
    if subject.may_act is None:
        raise InvalidRequest("subject_token names no actor in may_act", reason="may_act_missing")
    if subject.may_act.sub != actor:
        raise InvalidRequest(f"subject_token may be exchanged only by {subject.may_act.sub}",
                             reason="may_act_mismatch")


def _check_chain_growth(subject: AccessClaims, actor: str, max_depth: int) -> None:
    if actor in subject.actors:
        raise InvalidRequest(f"{actor} already acts in this chain", reason="actor_repeated")
    if subject.depth + 1 > max_depth:
        raise InvalidRequest(f"chain would exceed {max_depth} actors", reason="max_depth_exceeded")


def _target(request: ExchangeRequest, directory: Directory,
            issuance: Issuance) -> tuple[str, MayAct | None, frozenset[str]]:
    """The new token's ``aud``, ``may_act`` and the scopes that target can use."""
    if (request.resource is None) == (request.audience is None):
        raise InvalidRequest("give exactly one of resource (a service) or audience (an agent)",
                             reason="target_required")
    if request.resource is not None:
        name = issuance.services.get(request.resource.rstrip("/"))
        if name is None or name not in directory.services:
            raise InvalidTarget("resource is not a known service", reason="unknown_resource")
        return request.resource.rstrip("/"), None, frozenset(directory.services[name].scopes)
    nxt = request.audience
    assert nxt is not None
    if nxt not in directory.agents:
        raise InvalidTarget("audience is not a known agent", reason="unknown_audience")
    # A join's hand-off continues from its branches: each branch's agent (its token's
    # may_act) must be one that may hand off to the join; otherwise the actor must be.
    handing = ([b.may_act.sub for b in request.joined if b.may_act is not None]
               if request.joined else [request.actor])
    for agent in handing:
        if agent not in directory.agents or nxt not in directory.agents[agent].hands_off_to:
            raise InvalidTarget(f"{agent} may not hand off to {nxt}",
                                reason="handoff_not_allowed")
    return issuance.issuer, MayAct(sub=nxt), frozenset(directory.agents[nxt].allowed_scopes)


def _choose_scopes(requested: frozenset[str] | None, grantable: frozenset[str]) -> frozenset[str]:
    if requested is None:
        if not grantable:
            raise InvalidScope("no scope is grantable for this exchange", reason="no_grantable_scope")
        return grantable
    refused = sorted(requested - grantable)
    if refused:
        raise InvalidScope(f"scope not grantable: {' '.join(refused)}", reason="scope_not_grantable")
    return requested


def decide_root(user: str, required: list[str], ctx: Context, first_agent: str,
                directory: Directory, issuance: Issuance, *, client: str, user_version: int,
                registry_epoch: str, now: int, holder: User | None = None) -> Grant:
    """The root grant of a run: what the workflow needs ∩ what the user holds ∩ context policy.

    Scopes the user lacks or the context forbids are dropped (and reported), not refused; a
    grant with nothing left is ``invalid_scope``. ``holder`` replaces the directory's entry for
    a user rooted in an identity provider (:func:`~._federated.federated_holder`).
    """
    entry = holder or directory.users.get(user)
    if entry is None or entry.disabled:
        raise InvalidGrant(f"{user} is not an active user", reason="unknown_user")
    if first_agent not in directory.agents:
        raise InvalidTarget("audience is not a known agent", reason="unknown_audience")
    held = filter_scopes(entry.permissions, required)
    granted = [s for s in held if directory.context_permits(s, ctx)]
    dropped = tuple(s for s in dict.fromkeys(required) if s not in granted)
    if not granted:
        raise InvalidScope("the user holds none of the scopes the workflow needs here",
                           reason="no_grantable_scope")
    jti = new_jti()
    claims = AccessClaims(
        iss=issuance.issuer, sub=user, aud=issuance.issuer, client_id=client,
        scope=format_scopes(granted), iat=now, exp=now + issuance.ttl, jti=jti,
        may_act=MayAct(sub=first_agent), ctx=ctx, user_version=user_version,
        registry_epoch=registry_epoch,
        revocation_url=issuance.revocation_url, log_url=issuance.log_url_for(jti),
    )
    return Grant(claims=claims, dropped=dropped)
