"""Revocation: by token (``jti``), by user (a version bumped on offboarding or permission change),
by run, by the DPoP key a token is bound to (``cnf.jkt``: an agent's key revoked with
``infrabot keys revoke dpop:AGENT KID`` takes the tokens already bound to it along, reason
``bound_key_revoked``), and cascading: every token carries the ``jti`` of each token it was
exchanged from (``ancestors``), so revoking any token refuses all its descendants.

A registry that loses its memory (an unpersisted Redis restarted, a flushed database, a new
process) cannot tell which tokens were revoked, so it must not answer for tokens issued before.
It names each life of its memory with a random *epoch*, taken when it first finds none; a root
token carries the epoch it was issued under (``registry_epoch``, copied unchanged down the
chain), and a check refuses a token of another epoch (``registry_reset``).

This module is the pure core: the rules (:func:`refusal_for`, :func:`peek_target`) and the
interface every registry implements (:class:`RevocationStore`, :class:`PendingCheck`); the
in-process registry (embedded mode and tests) is :mod:`._memory_registry`. The shared
registry of distributed mode, on Redis, is an adapter at the edge
(:mod:`orchestrator.registry`); nothing here imports a client library.

:meth:`RevocationStore.check` is one round trip however long the chain. A store that cannot be
reached raises :class:`~orchestrator.errors.Unavailable`: callers deny; nothing is allowed on an
unanswered check. The same stores keep one-time keys (:meth:`claim_once`) for assertion and
webhook replay protection.

A one-time key forgotten with the registry's memory would let a captured assertion through once
more, so a claim may say when what it claims was issued (``issued_at``): the registry remembers
when its memory began (Redis: the first store to find it empty writes the time; in process:
when the store was made), and a claim for something issued before that raises
:class:`~orchestrator.errors.PredatesMemory` rather than pass as a first use. ``issued_at`` has
a resolution of one second, so up to :data:`MEMORY_BEGAN_TOLERANCE_SECONDS` before the memory
began is still taken. What a restart can let through again is an assertion used in the second
or two before it, plus as far as its signer's clock runs ahead (an assertion issued further in
the future than the leeway is refused), not one used a minute before.

:meth:`RevocationStore.begin` sends a check (and optionally a one-time claim) before the token is
verified, so the round trip overlaps the signature check instead of following it: the query
names what the token's payload says (:func:`peek_target`, read without verifying it), and its
answer is applied only to verified claims that name the same things, and only while it is fresh
(:meth:`PendingCheck.check`; other claims, or claims verified too long after the query left,
are checked afresh). A token exchange
claims its client's assertion and checks its subject token this way in one round trip; a service
checks a bearer token this way. Only a remote registry (``remote``) is asked early. The query
only reads; a token that then fails verification has cost the registry one read, nothing more.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, Self, cast

from orchestrator.errors import InvalidToken
from orchestrator.identity import _jws
from orchestrator.identity._claims import (
    CTX_VALUE_PATTERN,
    ID_PATTERN,
    JKT_PATTERN,
    JTI_PATTERN,
    MAX_ACT_NESTING,
    AccessClaims,
)

# How far before the memory began a claim's issued_at may be and still be taken (see above).
MEMORY_BEGAN_TOLERANCE_SECONDS = 1
# How long a revoked jti or DPoP key is kept past the ``expires_at`` it was revoked with (the
# last moment a token it refuses could expire): at least any verifier's leeway on ``exp``
# (``leeway_seconds`` is at most 60).
REVOKED_KEPT_PAST_EXPIRY_SECONDS = 60
# How long a run revoked without an ``expires_at`` stays revoked: longer than any token of it
# could live (a root token lives at most 900 s, and every token exchanged from it no longer).
RUN_REVOCATION_TTL = 24 * 3600


class Standing(NamedTuple):
    """What a root token must carry from the registry: its epoch and the user's version."""

    registry_epoch: str
    user_version: int


def new_epoch() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class RevocationTarget:
    """What a check of one token reads: its jti and its ancestors', its run, its user and the
    DPoP key it is bound to (None for an unbound token)."""

    jti: str
    ancestors: tuple[str, ...]
    run_id: str
    sub: str
    jkt: str | None

    @classmethod
    def of(cls, claims: AccessClaims) -> RevocationTarget:
        jkt = claims.cnf.jkt if claims.cnf is not None else None
        return cls(claims.jti, tuple(claims.ancestors), claims.ctx.run_id, claims.sub, jkt)


_JTI, _SUB, _RUN, _JKT = (re.compile(p)
                          for p in (JTI_PATTERN, ID_PATTERN, CTX_VALUE_PATTERN, JKT_PATTERN))


def peek_target(token: object, *, max_bytes: int) -> RevocationTarget | None:
    """The target ``token``'s payload names, read WITHOUT verifying anything: only to send the
    registry's query before the token is verified. None for anything not shaped like one of our
    tokens, or naming anything a valid token could not (the check then waits for the verified
    claims). Never raises."""
    payload = _jws.unverified_payload(token, max_bytes=max_bytes)
    if payload is None or not isinstance(payload.get("ctx"), dict):
        return None
    jti, run_id, sub = payload.get("jti"), payload["ctx"].get("run_id"), payload.get("sub")
    ancestors, cnf = payload.get("ancestors", []), payload.get("cnf")
    if not isinstance(ancestors, list) or len(ancestors) > MAX_ACT_NESTING:
        return None
    if cnf is not None and not isinstance(cnf, dict):
        return None
    jkt = cnf.get("jkt") if cnf is not None else None
    named = [(_JTI, jti), (_RUN, run_id), (_SUB, sub), *((_JTI, a) for a in ancestors),
             *([(_JKT, jkt)] if cnf is not None else [])]
    if not all(isinstance(v, str) and pattern.fullmatch(v) for pattern, v in named):
        return None
    return RevocationTarget(cast(str, jti), tuple(ancestors), cast(str, run_id), cast(str, sub),
                            cast("str | None", jkt))


class PendingCheck(Protocol):
    """A check (and maybe a one-time claim) sent to the registry whose answer is read later.
    Use as a context manager: leaving it reads any answer not yet read."""

    def claimed(self) -> bool:
        """Whether the one-time claim was made (True when none was asked for);
        :class:`PredatesMemory` if what it claims was issued before the registry's memory."""
        ...

    def check(self, claims: AccessClaims) -> None:
        """Raise the refusal the registry's answer implies for ``claims``; claims that name
        something other than the target are checked afresh."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class RevocationStore(Protocol):
    # True when a check is a round trip worth overlapping with verification (see begin).
    remote: bool

    def revoke_jti(self, jti: str, *, expires_at: int) -> None: ...
    def revoke_user(self, user: str) -> int: ...
    def revoke_run(self, run_id: str, *, expires_at: int | None = None) -> bool:
        """Refuse every token of ``run_id`` until ``expires_at`` (the last moment a token of it
        could expire; kept ``REVOKED_KEPT_PAST_EXPIRY_SECONDS`` past it) or, with None, for
        ``RUN_REVOCATION_TTL``; a run revoked already stays revoked until the later of the two.
        True if it was not revoked before this call."""
        ...

    def revoke_key(self, jkt: str, *, expires_at: int) -> None:
        """Refuse every token bound to the DPoP key ``jkt`` (its RFC 7638 thumbprint) until
        ``expires_at``, when the last token that could be bound to it has expired."""
        ...

    def user_version(self, user: str) -> int: ...
    def standing(self, user: str) -> Standing: ...
    def check(self, claims: AccessClaims) -> None: ...

    def claim_once(self, key: str, *, ttl: int, issued_at: int | None = None) -> bool:
        """Claim ``key`` for ``ttl`` seconds: False if it is claimed already;
        :class:`PredatesMemory` if ``issued_at`` is before the registry's memory began."""
        ...

    def begin(self, target: RevocationTarget | None, *,
              claim: tuple[str, int] | None = None,
              issued_at: int | None = None) -> PendingCheck:
        """Send the check of ``target`` (and the one-time ``claim`` of a key for a ttl, as
        :meth:`claim_once` with ``issued_at``) in one round trip now; read the answer through
        the returned :class:`PendingCheck`."""
        ...

    def release_once(self, key: str) -> None: ...

    # Hold a value under a key for ``ttl`` seconds (an agent's registered DPoP key); recall
    # answers None once it expired.
    def remember(self, key: str, value: str, *, ttl: int) -> None: ...
    def recall(self, key: str) -> str | None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def refusal_for(claims: AccessClaims, epoch: str, revoked_jtis: set[str], key_revoked: bool,
                run_revoked: bool, version: int) -> InvalidToken | None:
    """The refusal a set of registry answers implies, or None when nothing is revoked.
    ``key_revoked``: the DPoP key the token is bound to (``cnf.jkt``) has been revoked."""
    if claims.registry_epoch != epoch:
        return InvalidToken("the revocation registry has lost its memory since this token was "
                            "issued and cannot tell whether it was revoked",
                            reason="registry_reset")
    if claims.jti in revoked_jtis:
        return InvalidToken("token has been revoked", reason="token_revoked")
    if revoked_jtis & set(claims.ancestors):
        return InvalidToken("a token this one was exchanged from has been revoked",
                            reason="ancestor_revoked")
    if key_revoked:
        return InvalidToken("the DPoP key this token is bound to has been revoked",
                            reason="bound_key_revoked")
    if run_revoked:
        return InvalidToken("the run this token belongs to has been revoked", reason="run_revoked")
    if version != claims.user_version:
        return InvalidToken("the user's delegations have been revoked", reason="user_revoked")
    return None
