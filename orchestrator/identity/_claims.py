"""Typed claims of an access token (RFC 9068 + RFC 8693 ``act`` / ``may_act``).

``sub`` is always the principal (a user); the outermost ``act.sub`` is the current actor and prior
actors nest inside it, least recent deepest. :meth:`AccessClaims.chain` reads that out as
``[current actor, ..., first actor, principal]``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeGuard

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    model_serializer,
)

from orchestrator.identity._scopes import parse_scopes

USER_PREFIX = "user:"
AGENT_PREFIX = "agent:"
_ID = r"^(user|agent|client):[a-z0-9][a-z0-9_.-]{0,63}$"
_CTX_VALUE = r"^[A-Za-z0-9][A-Za-z0-9_./:@+-]{0,127}$"
JTI_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
# A user's subject at an identity provider (Keycloak UUID, Auth0 "auth0|...", Entra, Okta ids).
IDP_SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@|+=/-]{0,254}$"
ID_PATTERN, CTX_VALUE_PATTERN = _ID, _CTX_VALUE
# Structural bound on nesting, checked before any model is built; the policy bound is max_depth.
MAX_ACT_NESTING = 16
# The revocation registry's epoch: a random name it takes when its memory starts (see _revocation).
EPOCH_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
# An RFC 7638 SHA-256 thumbprint, base64url without padding.
JKT_PATTERN = r"^[A-Za-z0-9_-]{43}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _well_formed(value: str) -> str:
    parse_scopes(value)  # raises InvalidScope as is (the verifier maps it)
    return value


# A space-separated scope string, well formed (:func:`parse_scopes`).
ScopeText = Annotated[str, Field(max_length=4096), AfterValidator(_well_formed)]


class Actor(_Frozen):
    """One level of the ``act`` chain: the actor's identity (``sub``) and the prior actor.

    RFC 8693 section 4.1: non-identity claims inside ``act`` (``exp``, ``nbf``, ``aud``,
    ``scope`` ...) are not meaningful there and are not used. Any claim other than ``sub`` and
    ``act`` is ignored: it is dropped when the claims are read, so it is neither trusted nor
    copied into a token exchanged from this one.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str = Field(pattern=_ID)
    act: Actor | None = None


class MayAct(_Frozen):
    sub: str = Field(pattern=_ID)


class Confirmation(_Frozen):
    """RFC 7800 ``cnf``: the key a DPoP-bound token is bound to, by its RFC 7638 thumbprint
    (RFC 9449 section 6.1)."""

    jkt: str = Field(pattern=JKT_PATTERN)


class DelegationRecord(_Frozen):
    """One hand-off, as its delegator signed it and the authorization server attested it: one
    member of the ``delegation_chain`` claim (draft-liu-oauth-chain-delegation-00, its member
    names where they fit; docs/delegation-chain.md says where this departs). ``scope`` is what
    the delegator handed off; ``run_id`` and ``parent_jti`` tie the record to the run and the
    token it was made from. The two signatures are detached JWS over the record's canonical
    form (:func:`~._delegation.canonical`)."""

    delegator_id: str = Field(pattern=_ID)
    delegatee_id: str = Field(pattern=_ID)
    delegation_timestamp: StrictInt
    run_id: str = Field(pattern=_CTX_VALUE)
    parent_jti: str = Field(pattern=JTI_PATTERN)
    scope: ScopeText
    delegator_signature: str | None = Field(None, max_length=2048)
    as_signature: str | None = Field(None, max_length=2048)

    @property
    def scopes(self) -> frozenset[str]:
        return parse_scopes(self.scope)


class Context(_Frozen):
    """What the delegation is rooted in; policy checks it at every hop and every service."""

    trigger: str = Field(pattern=_CTX_VALUE)
    environment: str = Field(pattern=_CTX_VALUE)
    repository: str = Field(pattern=_CTX_VALUE)
    commit: str = Field(pattern=_CTX_VALUE)
    run_id: str = Field(pattern=_CTX_VALUE)
    # A run rooted in a user's own identity provider: its issuer and the user's subject there.
    idp: str | None = Field(None, pattern=r"^https?://[!-~]{1,240}$")
    idp_subject: str | None = Field(None, pattern=IDP_SUBJECT_PATTERN)

    @model_serializer(mode="wrap")
    def _unset_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, str]:
        """Dumped without the fields a run does not have (``idp`` for a CI event's run), so a
        context reads as it did before they existed: in tokens, assertions and audit records."""
        return {k: v for k, v in handler(self).items() if v is not None}


class AccessClaims(_Frozen):
    """The payload of every access token this project issues."""

    iss: str = Field(max_length=256)
    sub: str = Field(pattern=_ID)
    aud: str = Field(max_length=256)
    client_id: str = Field(pattern=_ID)
    scope: ScopeText
    iat: StrictInt
    exp: StrictInt
    nbf: StrictInt | None = None
    jti: str = Field(pattern=JTI_PATTERN)
    act: Actor | None = None
    may_act: MayAct | None = None
    ctx: Context
    user_version: StrictInt = Field(ge=0)
    registry_epoch: str = Field(pattern=EPOCH_PATTERN)
    ancestors: tuple[StrictStr, ...] = Field(default=(), max_length=MAX_ACT_NESTING)
    revocation_url: str | None = Field(None, max_length=512)
    log_url: str | None = Field(None, max_length=512)
    cnf: Confirmation | None = None
    # The hand-offs of this chain, most recent first (docs/delegation-chain.md).
    delegation_chain: tuple[DelegationRecord, ...] | None = Field(
        None, max_length=MAX_ACT_NESTING)

    @property
    def scopes(self) -> frozenset[str]:
        return parse_scopes(self.scope)

    @property
    def actors(self) -> list[str]:
        """The actors, current first."""
        out: list[str] = []
        node = self.act
        while node is not None:
            out.append(node.sub)
            node = node.act
        return out

    def chain(self) -> list[str]:
        """``[current actor, ..., first actor, principal]``."""
        return [*self.actors, self.sub]

    @property
    def holders(self) -> list[str]:
        """Who held this chain's authority, most recent first: the agent a hand-off token is
        for (``may_act``), then the actors. Each adjacent pair is one hand-off."""
        return [*([self.may_act.sub] if self.may_act and self.act else []), *self.actors]

    @property
    def current_actor(self) -> str | None:
        return self.act.sub if self.act else None

    @property
    def depth(self) -> int:
        return len(self.actors)

    def public_view(self) -> dict[str, Any]:
        """Decoded claims fit to print or store (they hold no secret; the signature is not here)."""
        return self.model_dump(exclude_none=True)


def is_time(value: object) -> TypeGuard[int | float]:
    """A JWT NumericDate as a claim's JSON gave it: an int or a finite float, not a bool, and
    within what a float holds exactly (a 400-digit integer is not a time, nor ``math``'s to
    compare)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 2 ** 53 if isinstance(value, int) else math.isfinite(value)


def act_nesting(act: object) -> int:
    """How deep a raw ``act`` value nests, computed without recursion; -1 if it is not objects."""
    depth = 0
    node = act
    while node is not None:
        if not isinstance(node, dict):
            return -1
        depth += 1
        if depth > MAX_ACT_NESTING:
            return depth
        node = node.get("act")
    return depth


def nest(actor: str, inner: Actor | None) -> Actor:
    """A new outermost actor around an existing chain."""
    return Actor(sub=actor, act=inner)
