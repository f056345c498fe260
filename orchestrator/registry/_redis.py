"""The revocation registry on Redis: the shared registry of distributed mode, an adapter of the
:class:`~orchestrator.identity.RevocationStore` interface whose rules live in the identity core
(:mod:`orchestrator.identity._revocation`, which explains the epochs, the one-time claims and
the checks sent ahead). Everything that speaks to Redis is here.

Keys expire with what they refer to: a revoked ``jti`` with its token, a revoked DPoP key with
the last token that could be bound to it, a revoked run with the last token of it (each plus
``REVOKED_KEPT_PAST_EXPIRY_SECONDS``); a run revoked with no expiry, and a revoked user, after
a day; a one-time key after the ttl its claim names (an assertion's: until its ``exp``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from orchestrator.errors import Unavailable
from orchestrator.identity import (
    EPOCH_PATTERN,
    MEMORY_BEGAN_TOLERANCE_SECONDS,
    REVOKED_KEPT_PAST_EXPIRY_SECONDS,
    RUN_REVOCATION_TTL,
    AccessClaims,
    AnsweredCheck,
    MemoryRevocationStore,
    PendingCheck,
    RevocationStore,
    RevocationTarget,
    Standing,
    new_epoch,
    refusal_for,
)
from orchestrator.registry._ahead import (
    Connections,
    InFlight,
    RedisLike,
    claim_answer,
    unreachable,
)

_PREFIX = "infrabot:"
_EPOCH_KEY = f"{_PREFIX}epoch"
_BEGAN_KEY = f"{_PREFIX}memory_began"  # epoch seconds, written when the memory is found empty
_EPOCH = re.compile(EPOCH_PATTERN)
# An answer read this long after its query was sent is not used: the check is asked again.


class RedisRevocationStore:
    """The shared registry for distributed mode. Keys expire with what they refer to."""

    remote = True

    def __init__(self, client: RedisLike, clock: Callable[[], float] = time.time) -> None:
        self._r = client
        self._clock = clock
        self._ahead = Connections(client)

    @classmethod
    def from_url(cls, url: str) -> RedisRevocationStore:
        client = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        return cls(cast(RedisLike, client))

    def _call(self, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except (redis.RedisError, OSError) as exc:
            raise unreachable() from exc

    def revoke_jti(self, jti: str, *, expires_at: int) -> None:
        ttl = max(1, int(expires_at - self._clock()) + REVOKED_KEPT_PAST_EXPIRY_SECONDS)
        self._call(lambda: self._r.set(f"{_PREFIX}jti:{jti}", 1, ex=ttl))

    def revoke_key(self, jkt: str, *, expires_at: int) -> None:
        ttl = max(1, int(expires_at - self._clock()) + REVOKED_KEPT_PAST_EXPIRY_SECONDS)
        self._call(lambda: self._r.set(f"{_PREFIX}jkt:{jkt}", 1, ex=ttl))

    def revoke_user(self, user: str) -> int:
        return int(self._call(lambda: self._r.incr(f"{_PREFIX}user:{user}")))  # type: ignore[call-overload]

    def revoke_run(self, run_id: str, *, expires_at: int | None = None) -> bool:
        ttl = (max(1, math.ceil(expires_at - self._clock()) + REVOKED_KEPT_PAST_EXPIRY_SECONDS)
               if expires_at is not None else RUN_REVOCATION_TTL)
        return self._call(lambda: self._r.execute_command(
            "EVAL", _REVOKE_RUN_SCRIPT, 1, f"{_PREFIX}run:{run_id}", ttl)) == 1

    def user_version(self, user: str) -> int:
        value = self._call(lambda: self._r.get(f"{_PREFIX}user:{user}"))
        return int(value) if value is not None else 0  # type: ignore[call-overload]

    def standing(self, user: str) -> Standing:
        keys = [_EPOCH_KEY, f"{_PREFIX}user:{user}"]
        values = self._call(lambda: self._r.mget(keys))
        assert isinstance(values, list)
        epoch = self._epoch(values[0])
        if values[0] is None:  # the version was read before this epoch began: read it in it
            values = self._call(lambda: self._r.mget(keys))
            assert isinstance(values, list)
            if values[0] is None or _decoded(values[0]) != epoch:
                raise _restarting()
        version = int(values[1]) if values[1] is not None else 0  # type: ignore[call-overload]
        return Standing(epoch, version)

    def _epoch(self, found: object) -> str:
        """The registry's epoch as read (``found``), or, when Redis has none (it restarted empty
        or was flushed), a new one: whichever store sets it first names the new memory, and
        says when it began unless a one-time claim said so first."""
        if found is None:
            fresh = new_epoch()
            if self._call(lambda: self._r.set(_EPOCH_KEY, fresh, nx=True)):
                began = int(self._clock())
                self._call(lambda: self._r.set(_BEGAN_KEY, began, nx=True))
                return fresh
            found = self._call(lambda: self._r.get(_EPOCH_KEY))
            if found is None:  # lost again between the two calls: refuse rather than guess
                raise _restarting()
        return _decoded(found)

    def check(self, claims: AccessClaims) -> None:
        keys = _check_keys(claims)
        values = self._call(lambda: self._r.mget(keys))
        assert isinstance(values, list)
        self._refuse_if_revoked(claims, values)

    def _refuse_if_revoked(self, claims: AccessClaims, values: list[Any]) -> None:
        """Raise the refusal the answers to :func:`_check_keys` imply, if any: the jtis', then
        the bound key's (a bound token only), the run's, the user's and the epoch."""
        jtis = [claims.jti, *claims.ancestors]
        revoked = {j for j, v in zip(jtis, values, strict=False) if v is not None}
        key_revoked = claims.cnf is not None and values[len(jtis)] is not None
        version = int(values[-2]) if values[-2] is not None else 0
        refusal = refusal_for(claims, self._epoch(values[-1]), revoked, key_revoked,
                              values[-3] is not None, version)
        if refusal is not None:
            raise refusal

    def claim_once(self, key: str, *, ttl: int, issued_at: int | None = None) -> bool:
        command = self._claim_command(key, ttl, issued_at)
        return claim_answer(self._call(lambda: self._r.execute_command(*command)))

    def _claim_command(self, key: str, ttl: int, issued_at: int | None) -> tuple[object, ...]:
        """A plain SET NX, or with ``issued_at`` the script that also compares it with the time
        the memory began."""
        if issued_at is None:
            return ("SET", _once_key(key), 1, "NX", "EX", ttl)
        return ("EVAL", _CLAIM_SCRIPT, 2, _once_key(key), _BEGAN_KEY, ttl,
                issued_at + MEMORY_BEGAN_TOLERANCE_SECONDS, int(self._clock()))

    def begin(self, target: RevocationTarget | None, *,
              claim: tuple[str, int] | None = None,
              issued_at: int | None = None) -> PendingCheck:
        commands: list[tuple[object, ...]] = []
        if claim is not None:
            commands.append(self._claim_command(claim[0], claim[1], issued_at))
        if target is not None:
            commands.append(("MGET", *_target_keys(target)))
        if not commands:
            return AnsweredCheck(self.check, True)
        return InFlight(self._ahead, commands, claiming=claim is not None, target=target,
                        ask=self.check, refuse=self._refuse_if_revoked)

    def release_once(self, key: str) -> None:
        self._call(lambda: self._r.delete(_once_key(key)))

    def remember(self, key: str, value: str, *, ttl: int) -> None:
        self._call(lambda: self._r.set(f"{_PREFIX}value:{key}", value, ex=max(1, ttl)))

    def recall(self, key: str) -> str | None:
        value = self._call(lambda: self._r.get(f"{_PREFIX}value:{key}"))
        if value is None:
            return None
        return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)

    def ping(self) -> None:
        self._call(self._r.ping)

    def close(self) -> None:
        self._ahead.close()
        close = getattr(self._r, "close", None)
        if close is not None:
            close()


def _once_key(key: str) -> str:
    return f"{_PREFIX}once:{key}"


# Revoke a run for ARGV[1] seconds: 1 if it was not revoked, else 0, and a revocation already
# in place is extended to that, never shortened.
_REVOKE_RUN_SCRIPT = """
if redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 1 end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 0
"""

# A one-time claim that also says when what it claims was issued, in one atomic step: the time
# the memory began (written now if Redis has none, or holds anything but whole seconds: it
# restarted empty or was flushed, so the memory begins now), then -1 if ARGV[2] (issued_at plus
# the tolerance) is before it, else the claim: 1 if made, 0 if the key was claimed already.
# KEYS: the one-time key, the began key; ARGV: ttl, issued_at + tolerance, now.
_CLAIM_SCRIPT = """
local stored = redis.call('GET', KEYS[2])
local began = stored and string.match(stored, '^%d+$') and tonumber(stored)
if not began then
  began = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], ARGV[3])
end
if tonumber(ARGV[2]) < began then return -1 end
if redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""


def _check_keys(claims: AccessClaims) -> list[str]:
    return _target_keys(RevocationTarget.of(claims))


def _target_keys(target: RevocationTarget) -> list[str]:
    """What a check reads: the token's and its ancestors' jti keys, then the key it is bound to
    (a bound token only), its run, its user and the registry's epoch."""
    keys = [f"{_PREFIX}jti:{j}" for j in (target.jti, *target.ancestors)]
    if target.jkt is not None:
        keys.append(f"{_PREFIX}jkt:{target.jkt}")
    return [*keys, f"{_PREFIX}run:{target.run_id}", f"{_PREFIX}user:{target.sub}", _EPOCH_KEY]


def _decoded(epoch: object) -> str:
    """An epoch as stored; one that is not what a store writes is a registry fault (503)."""
    text = epoch.decode("ascii", "replace") if isinstance(epoch, bytes) else str(epoch)
    if not _EPOCH.fullmatch(text):
        raise Unavailable("the revocation registry holds a malformed epoch",
                          reason="revocation_unavailable")
    return text


def _restarting() -> Unavailable:
    return Unavailable("revocation registry is restarting", reason="revocation_unavailable")


def open_store(redis_url: str | None) -> RevocationStore:
    """The registry the settings name: Redis when a URL is given, in-process otherwise."""
    if redis_url:
        return RedisRevocationStore.from_url(redis_url)
    return MemoryRevocationStore()
