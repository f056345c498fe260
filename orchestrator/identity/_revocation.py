"""Revocation: by token (``jti``), by user (a version bumped on offboarding or permission change),
by run, and cascading: every token carries the ``jti`` of each token it was exchanged from
(``ancestors``), so revoking any token refuses all its descendants.

A registry that loses its memory (an unpersisted Redis restarted, a flushed database, a new
process) cannot tell which tokens were revoked, so it must not answer for tokens issued before.
It names each life of its memory with a random *epoch*, taken when it first finds none; a root
token carries the epoch it was issued under (``registry_epoch``, copied unchanged down the
chain), and a check refuses a token of another epoch (``registry_reset``).

Two stores behind one interface. :meth:`RevocationStore.check` is one round trip however long the
chain. A store that cannot be reached raises :class:`~orchestrator.errors.Unavailable`: callers
deny; nothing is allowed on an unanswered check. The same stores keep one-time keys
(:meth:`claim_once`) for assertion and webhook replay protection;
:meth:`~RevocationStore.claim_once_and_check` claims one and checks a token in the same round trip
(a token exchange claims its client's assertion and checks its subject token).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, cast

from orchestrator.errors import InvalidToken, Unavailable
from orchestrator.identity._claims import EPOCH_PATTERN, AccessClaims

_PREFIX = "infrabot:"
_EPOCH_KEY = f"{_PREFIX}epoch"
_EPOCH = re.compile(EPOCH_PATTERN)
# A revoked run or user outlives every token that could name it.
RUN_REVOCATION_TTL = 24 * 3600


class Standing(NamedTuple):
    """What a root token must carry from the registry: its epoch and the user's version."""

    registry_epoch: str
    user_version: int


def new_epoch() -> str:
    return secrets.token_urlsafe(12)


class RevocationStore(Protocol):
    def revoke_jti(self, jti: str, *, expires_at: int) -> None: ...
    def revoke_user(self, user: str) -> int: ...
    def revoke_run(self, run_id: str) -> None: ...
    def user_version(self, user: str) -> int: ...
    def standing(self, user: str) -> Standing: ...
    def check(self, claims: AccessClaims) -> None: ...
    def claim_once(self, key: str, *, ttl: int) -> bool: ...

    def claim_once_and_check(self, key: str, *, ttl: int, claims: AccessClaims) -> bool:
        """:meth:`claim_once` then :meth:`check` in one round trip: False, with nothing checked,
        if ``key`` was claimed before; else the check's refusal, if any (the claim stands)."""
        ...

    def release_once(self, key: str) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def refusal_for(claims: AccessClaims, epoch: str, revoked_jtis: set[str], run_revoked: bool,
                version: int) -> InvalidToken | None:
    """The refusal a set of registry answers implies, or None when nothing is revoked."""
    if claims.registry_epoch != epoch:
        return InvalidToken("the revocation registry has lost its memory since this token was "
                            "issued and cannot tell whether it was revoked",
                            reason="registry_reset")
    if claims.jti in revoked_jtis:
        return InvalidToken("token has been revoked", reason="token_revoked")
    if revoked_jtis & set(claims.ancestors):
        return InvalidToken("a token this one was exchanged from has been revoked",
                            reason="ancestor_revoked")
    if run_revoked:
        return InvalidToken("the run this token belongs to has been revoked", reason="run_revoked")
    if version != claims.user_version:
        return InvalidToken("the user's delegations have been revoked", reason="user_revoked")
    return None


class MemoryRevocationStore:
    """In-process registry for embedded mode and tests."""

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 epoch: str | None = None) -> None:
        self._clock = clock
        self.epoch = epoch or new_epoch()  # this process's memory is the registry's
        self._lock = threading.Lock()
        self._jtis: dict[str, float] = {}
        self._runs: set[str] = set()
        self._users: dict[str, int] = {}
        self._once: dict[str, float] = {}

    def revoke_jti(self, jti: str, *, expires_at: int) -> None:
        with self._lock:
            self._jtis[jti] = expires_at

    def revoke_user(self, user: str) -> int:
        with self._lock:
            self._users[user] = self._users.get(user, 0) + 1
            return self._users[user]

    def revoke_run(self, run_id: str) -> None:
        with self._lock:
            self._runs.add(run_id)

    def user_version(self, user: str) -> int:
        return self._users.get(user, 0)

    def standing(self, user: str) -> Standing:
        return Standing(self.epoch, self.user_version(user))

    def check(self, claims: AccessClaims) -> None:
        with self._lock:
            revoked = {j for j in (claims.jti, *claims.ancestors) if j in self._jtis}
            refusal = refusal_for(claims, self.epoch, revoked, claims.ctx.run_id in self._runs,
                                  self._users.get(claims.sub, 0))
        if refusal is not None:
            raise refusal

    def claim_once(self, key: str, *, ttl: int) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._once) > 100_000:
                self._once = {k: t for k, t in self._once.items() if t > now}
            if self._once.get(key, 0) > now:
                return False
            self._once[key] = now + ttl
            return True

    def claim_once_and_check(self, key: str, *, ttl: int, claims: AccessClaims) -> bool:
        if not self.claim_once(key, ttl=ttl):
            return False
        self.check(claims)
        return True

    def release_once(self, key: str) -> None:
        """Forget a claim whose work failed transiently, so a retry of it is accepted."""
        with self._lock:
            self._once.pop(key, None)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


class _RedisLike(Protocol):
    def set(self, *args: object, **kwargs: object) -> object: ...
    def incr(self, name: str) -> int: ...
    def get(self, name: str) -> object: ...
    def mget(self, keys: list[str]) -> list[object]: ...
    def ping(self) -> object: ...
    def delete(self, *names: str) -> object: ...
    def pipeline(self, transaction: bool = ...) -> Any: ...


class RedisRevocationStore:
    """The shared registry for distributed mode. Keys expire with what they refer to."""

    def __init__(self, client: _RedisLike, clock: Callable[[], float] = time.time) -> None:
        self._r = client
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> RedisRevocationStore:
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        return cls(cast(_RedisLike, client))

    def _call(self, fn: Callable[[], object]) -> object:
        import redis

        try:
            return fn()
        except (redis.RedisError, OSError) as exc:
            raise Unavailable("revocation registry unreachable",
                              reason="revocation_unavailable") from exc

    def revoke_jti(self, jti: str, *, expires_at: int) -> None:
        ttl = max(1, int(expires_at - self._clock()) + 60)
        self._call(lambda: self._r.set(f"{_PREFIX}jti:{jti}", 1, ex=ttl))

    def revoke_user(self, user: str) -> int:
        return int(self._call(lambda: self._r.incr(f"{_PREFIX}user:{user}")))  # type: ignore[call-overload]

    def revoke_run(self, run_id: str) -> None:
        self._call(lambda: self._r.set(f"{_PREFIX}run:{run_id}", 1, ex=RUN_REVOCATION_TTL))

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
        or was flushed), a new one: whichever store sets it first names the new memory."""
        if found is None:
            fresh = new_epoch()
            if self._call(lambda: self._r.set(_EPOCH_KEY, fresh, nx=True)):
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
        """Raise the refusal the answers to :func:`_check_keys` imply, if any."""
        jtis = [claims.jti, *claims.ancestors]
        revoked = {j for j, v in zip(jtis, values, strict=False) if v is not None}
        version = int(values[-2]) if values[-2] is not None else 0
        refusal = refusal_for(claims, self._epoch(values[-1]), revoked, values[-3] is not None,
                              version)
        if refusal is not None:
            raise refusal

    def claim_once(self, key: str, *, ttl: int) -> bool:
        return bool(self._call(lambda: self._r.set(f"{_PREFIX}once:{key}", 1, nx=True, ex=ttl)))

    def claim_once_and_check(self, key: str, *, ttl: int, claims: AccessClaims) -> bool:
        keys = _check_keys(claims)

        def both() -> list[Any]:  # one round trip: a pipeline, not a transaction
            pipe = self._r.pipeline(transaction=False)
            pipe.set(f"{_PREFIX}once:{key}", 1, nx=True, ex=ttl)
            pipe.mget(keys)
            return list(pipe.execute())

        answers = self._call(both)
        assert isinstance(answers, list)
        if not answers[0]:
            return False
        self._refuse_if_revoked(claims, answers[1])
        return True

    def release_once(self, key: str) -> None:
        self._call(lambda: self._r.delete(f"{_PREFIX}once:{key}"))

    def ping(self) -> None:
        self._call(self._r.ping)

    def close(self) -> None:
        close = getattr(self._r, "close", None)
        if close is not None:
            close()


def _check_keys(claims: AccessClaims) -> list[str]:
    """What a check reads: the token's and its ancestors' jti keys, then its run, its user and
    the registry's epoch."""
    keys = [f"{_PREFIX}jti:{j}" for j in (claims.jti, *claims.ancestors)]
    return [*keys, f"{_PREFIX}run:{claims.ctx.run_id}", f"{_PREFIX}user:{claims.sub}", _EPOCH_KEY]


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
