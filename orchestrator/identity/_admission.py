"""Whether verified claims admit a request for one scope: the service-side decision, pure.

A service (any resource server) calls :func:`admit_scope` after the token's signature, lifetime,
audience and revocation have been checked. The refusals, in the order they are checked:

* the token grants the scope                                   else ``insufficient_scope``
* the context rules permit it (a prod write needs CI)          else ``context_forbidden``
* the directory still allows the current actor that scope      else ``actor_not_allowed``
* the user still holds it and is not disabled                  else ``user_lacks_permission``

It reads only its arguments: the claims and the directory as they are now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import InsufficientScope
from orchestrator.identity._claims import AccessClaims, Context
from orchestrator.identity._policy import Directory, ResourceAttributes, mismatch_of


@dataclass(frozen=True)
class Caller:
    """An admitted request's identity: the principal, the acting agent and the whole chain."""

    principal: str
    actor: str
    chain: tuple[str, ...]
    scopes: tuple[str, ...]
    context: dict[str, str] = field(hash=False)
    jti: str
    run_id: str
    ctx: Context | None = field(default=None, hash=False)  # None for the static baseline

    def sees(self, target: ResourceAttributes) -> bool:
        """Whether a listing shows ``target`` to this caller: only what its context owns (the
        static baseline's service account sees everything, which is what it demonstrates)."""
        return self.ctx is None or mismatch_of(self.ctx, target) is None


def _forbid(reason: str, message: str) -> InsufficientScope:
    return InsufficientScope(message, reason=reason)


def admit_scope(directory: Directory, claims: AccessClaims, scope: str) -> Caller:
    """The caller ``claims`` stand for, if they admit ``scope``; else the refusal, raised."""
    actor = claims.current_actor
    if scope not in claims.scopes:
        raise _forbid("insufficient_scope", f"the token does not grant {scope}")
    if not directory.context_permits(scope, claims.ctx):
        raise _forbid("context_forbidden",
                      f"{scope} is not permitted in {claims.ctx.environment} "
                      f"when triggered by {claims.ctx.trigger}")
    agent = directory.agents.get(actor) if actor else None
    if actor is None or claims.client_id != actor or agent is None \
            or scope not in agent.allowed_scopes:
        raise _forbid("actor_not_allowed", f"the acting agent may not use {scope}")
    user = directory.users.get(claims.sub)
    if user is None or user.disabled or scope not in user.permissions:
        raise _forbid("user_lacks_permission", f"the user no longer holds {scope}")
    return Caller(
        principal=claims.sub,
        actor=actor,
        chain=tuple(claims.chain()),
        scopes=tuple(sorted(claims.scopes)),
        context=claims.ctx.model_dump(),
        jti=claims.jti,
        run_id=claims.ctx.run_id,
        ctx=claims.ctx,
    )
