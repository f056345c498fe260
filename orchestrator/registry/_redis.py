"""The revocation registry on Redis: the shared registry of distributed mode, an adapter of the
:class:`~orchestrator.identity.RevocationStore` interface whose rules live in the identity core
(:mod:`orchestrator.identity._revocation`, which explains the epochs, the one-time claims and
the checks sent ahead). Everything that speaks to Redis is here.

Keys expire with what they refer to: a revoked ``jti`` with its token (plus a minute), a revoked
run or user after a day, a one-time key after the ttl its claim names (an assertion's: until
its ``exp``).
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, Self, cast

import redis

from orchestrator.errors import PredatesMemory, Unavailable
from orchestrator.identity import (
    AccessClaims,
    MemoryRevocationStore,
    PendingCheck,
    RevocationStore,
    RevocationTarget,
    Standing,
)
from orchestrator.identity._claims import EPOCH_PATTERN
from orchestrator.identity._revocation import (
    MEMORY_BEGAN_TOLERANCE_SECONDS,
    AnsweredCheck,
    new_epoch,
    refusal_for,
)

_PREFIX = "infrabot:"
_EPOCH_KEY = f"{_PREFIX}epoch"
_BEGAN_KEY = f"{_PREFIX}memory_began"  # epoch seconds, written when the memory is found empty
_EPOCH = re.compile(EPOCH_PATTERN)
# A revoked run or user outlives every token that could name it.
RUN_REVOCATION_TTL = 24 * 3600
# An answer read this long after its query was sent is not used: the check is asked again.
IN_FLIGHT_MAX_AGE_SECONDS = 0.05


class _RedisLike(Protocol):
    def set(self, *args: object, **kwargs: object) -> object: ...
    def incr(self, name: str) -> int: ...
    def get(self, name: str) -> object: ...
    def mget(self, keys: list[str]) -> list[object]: ...
    def ping(self) -> object: ...
    def delete(self, *names: str) -> object: ...
    def execute_command(self, *args: object) -> object: ...
    @property
    def connection_pool(self) -> Any: ...


class RedisRevocationStore:
    """The shared registry for distributed mode. Keys expire with what they refer to."""

    remote = True

    def __init__(self, client: _RedisLike, clock: Callable[[], float] = time.time) -> None:
        self._r = client
        self._clock = clock
        self._ahead = _Connections(client)

    @classmethod
    def from_url(cls, url: str) -> RedisRevocationStore:
        client = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        return cls(cast(_RedisLike, client))

    def _call(self, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except (redis.RedisError, OSError) as exc:
            raise _unreachable() from exc

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
        """Raise the refusal the answers to :func:`_check_keys` imply, if any."""
        jtis = [claims.jti, *claims.ancestors]
        revoked = {j for j, v in zip(jtis, values, strict=False) if v is not None}
        version = int(values[-2]) if values[-2] is not None else 0
        refusal = refusal_for(claims, self._epoch(values[-1]), revoked, values[-3] is not None,
                              version)
        if refusal is not None:
            raise refusal

    def claim_once(self, key: str, *, ttl: int, issued_at: int | None = None) -> bool:
        command = self._claim_command(key, ttl, issued_at)
        return _claim_answer(self._call(lambda: self._r.execute_command(*command)))

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
        return _InFlight(self, commands, claiming=claim is not None, target=target)

    def release_once(self, key: str) -> None:
        self._call(lambda: self._r.delete(_once_key(key)))

    def ping(self) -> None:
        self._call(self._r.ping)

    def close(self) -> None:
        self._ahead.close()
        close = getattr(self._r, "close", None)
        if close is not None:
            close()


def _once_key(key: str) -> str:
    return f"{_PREFIX}once:{key}"


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


def _claim_answer(answer: object) -> bool:
    """What a claim command answered: a SET NX (OK, or True through redis-py's reply
    callbacks; nil when taken) or the claim script (1, 0, or -1: it predates the memory)."""
    if answer == -1:
        raise PredatesMemory
    return answer not in (None, 0)


def _check_keys(claims: AccessClaims) -> list[str]:
    return _target_keys(RevocationTarget.of(claims))


def _target_keys(target: RevocationTarget) -> list[str]:
    """What a check reads: the token's and its ancestors' jti keys, then its run, its user and
    the registry's epoch."""
    keys = [f"{_PREFIX}jti:{j}" for j in (target.jti, *target.ancestors)]
    return [*keys, f"{_PREFIX}run:{target.run_id}", f"{_PREFIX}user:{target.sub}", _EPOCH_KEY]


class _Connections:
    """The connections checks sent ahead (:class:`_InFlight`) use: taken from the client's pool
    once, each then used by one check at a time and kept for the next.

    Taking a connection from redis-py's pool and giving it back cost about 20 µs a check (locks,
    metrics and a health probe), near a tenth of a service's whole check; a kept connection is
    only polled (one syscall): one that Redis has closed (a restart) or that holds data is
    closed, and the send reopens it. A connection that failed, or that comes back after
    :meth:`close`, goes back to the pool closed. The pool still counts kept connections as in
    use, so closing the client closes them too. A forked child keeps none of its parent's.
    """

    MAX_KEPT = 64

    def __init__(self, client: _RedisLike) -> None:
        self._client = client
        self._kept: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        _ALL_CONNECTIONS.add(self)

    def take(self) -> Any:
        with self._lock:
            conn = self._kept.pop() if self._kept else None
        if conn is None:
            return self._client.connection_pool.get_connection()
        try:
            if conn.can_read(timeout=0):
                conn.disconnect()
        except (redis.RedisError, OSError):
            conn.disconnect()
        return conn

    def keep(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._kept) < self.MAX_KEPT:
                self._kept.append(conn)
                return
        self._client.connection_pool.release(conn)

    def drop(self, conn: Any) -> None:
        """A connection that failed: closed, and back to the pool."""
        conn.disconnect()
        self._client.connection_pool.release(conn)

    def close(self) -> None:
        with self._lock:
            kept, self._kept, self._closed = self._kept, [], True
        for conn in kept:
            self.drop(conn)

    def forget_after_fork(self) -> None:
        """In a forked child: the kept connections' sockets are the parent's, and the lock may
        have been held by a thread that does not exist here."""
        self._lock = threading.Lock()
        self._kept = []


_ALL_CONNECTIONS: weakref.WeakSet[_Connections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for connections in list(_ALL_CONNECTIONS):
        connections.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _InFlight:
    """Commands sent on one of the store's connections (:class:`_Connections`), their answers
    read on first use.

    The connection is the caller's alone until the answers are read, then kept for the next
    check; after a failure it is closed and dropped, since a half-read answer would corrupt it.
    Sending is retried once on a fresh connection (a kept one may be stale after a Redis
    restart); reading is not, since the claim may already have been made.
    """

    def __init__(self, store: RedisRevocationStore, commands: list[tuple[object, ...]], *,
                 claiming: bool, target: RevocationTarget | None) -> None:
        self._store, self._claiming, self._target = store, claiming, target
        self._count = len(commands)
        self._answers: list[Any] | None = None
        self._connections = store._ahead
        self._conn: Any = store._call(self._connections.take)
        self._sent_at = time.monotonic()
        self._send(commands)

    def _send(self, commands: list[tuple[object, ...]]) -> None:
        conn = self._conn
        for attempt in (1, 2):
            try:
                conn.send_packed_command(conn.pack_commands(commands))
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                conn.disconnect()  # the next send connects afresh
                if attempt == 2:
                    self._give_up(conn)
                    raise _unreachable() from exc
            except redis.RedisError as exc:  # e.g. an error answer to the connection handshake
                self._give_up(conn)
                raise _unreachable() from exc
            except BaseException:
                self._give_up(conn)
                raise

    def _give_up(self, conn: Any) -> None:
        self._conn = None
        self._connections.drop(conn)

    def _read(self) -> list[Any]:
        if self._answers is None:
            conn = self._conn
            if conn is None:  # the one read failed: it stays failed
                raise _unreachable()
            try:
                self._answers = [conn.read_response() for _ in range(self._count)]
            except BaseException as exc:
                self._give_up(conn)  # a half-read answer would corrupt the next command's
                if isinstance(exc, (redis.RedisError, OSError)):
                    raise _unreachable() from exc
                raise
            self._conn = None
            self._connections.keep(conn)
        return self._answers

    def claimed(self) -> bool:
        answers = self._read()
        return _claim_answer(answers[0]) if self._claiming else True

    def check(self, claims: AccessClaims) -> None:
        answers = self._read()
        if self._target is None or RevocationTarget.of(claims) != self._target:
            self._store.check(claims)  # the answer is about other names: ask about these
            return
        if time.monotonic() - self._sent_at > IN_FLIGHT_MAX_AGE_SECONDS:
            self._store.check(claims)  # verifying took long (a key fetch): ask again, now
            return
        self._store._refuse_if_revoked(claims, answers[-1])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._read()
            except Unavailable:
                pass  # the caller is already leaving with its own answer


def _decoded(epoch: object) -> str:
    """An epoch as stored; one that is not what a store writes is a registry fault (503)."""
    text = epoch.decode("ascii", "replace") if isinstance(epoch, bytes) else str(epoch)
    if not _EPOCH.fullmatch(text):
        raise Unavailable("the revocation registry holds a malformed epoch",
                          reason="revocation_unavailable")
    return text


def _unreachable() -> Unavailable:
    return Unavailable("revocation registry unreachable", reason="revocation_unavailable")


def _restarting() -> Unavailable:
    return Unavailable("revocation registry is restarting", reason="revocation_unavailable")


def open_store(redis_url: str | None) -> RevocationStore:
    """The registry the settings name: Redis when a URL is given, in-process otherwise."""
    if redis_url:
        return RedisRevocationStore.from_url(redis_url)
    return MemoryRevocationStore()
