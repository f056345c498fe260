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
(:meth:`claim_once`) for assertion and webhook replay protection.

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
(:meth:`PendingCheck.check`; other claims, or claims verified more than
:data:`IN_FLIGHT_MAX_AGE_SECONDS` after the query left, are checked afresh). A token exchange
claims its client's assertion and checks its subject token this way in one round trip; a service
checks a bearer token this way. Only a remote registry (``remote``) is asked early. The query
only reads; a token that then fails verification has cost the registry one read, nothing more.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, cast

from orchestrator.errors import InvalidToken, PredatesMemory, Unavailable
from orchestrator.identity import _jws
from orchestrator.identity._claims import (
    CTX_VALUE_PATTERN,
    EPOCH_PATTERN,
    ID_PATTERN,
    JTI_PATTERN,
    MAX_ACT_NESTING,
    AccessClaims,
)

_PREFIX = "infrabot:"
_EPOCH_KEY = f"{_PREFIX}epoch"
_BEGAN_KEY = f"{_PREFIX}memory_began"  # epoch seconds, written when the memory is found empty
_EPOCH = re.compile(EPOCH_PATTERN)
# A revoked run or user outlives every token that could name it.
RUN_REVOCATION_TTL = 24 * 3600
# How far before the memory began a claim's issued_at may be and still be taken (see above).
MEMORY_BEGAN_TOLERANCE_SECONDS = 1


def _predates(issued_at: int | None, began: int) -> bool:
    return issued_at is not None and issued_at + MEMORY_BEGAN_TOLERANCE_SECONDS < began


class Standing(NamedTuple):
    """What a root token must carry from the registry: its epoch and the user's version."""

    registry_epoch: str
    user_version: int


def new_epoch() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class RevocationTarget:
    """What a check of one token reads: its jti and its ancestors', its run and its user."""

    jti: str
    ancestors: tuple[str, ...]
    run_id: str
    sub: str

    @classmethod
    def of(cls, claims: AccessClaims) -> RevocationTarget:
        return cls(claims.jti, tuple(claims.ancestors), claims.ctx.run_id, claims.sub)


_JTI, _SUB, _RUN = (re.compile(p) for p in (JTI_PATTERN, ID_PATTERN, CTX_VALUE_PATTERN))
# An answer read this long after its query was sent is not used: the check is asked again.
IN_FLIGHT_MAX_AGE_SECONDS = 0.05


def peek_target(token: object, *, max_bytes: int) -> RevocationTarget | None:
    """The target ``token``'s payload names, read WITHOUT verifying anything: only to send the
    registry's query before the token is verified. None for anything not shaped like one of our
    tokens, or naming anything a valid token could not (the check then waits for the verified
    claims). Never raises."""
    if not isinstance(token, str) or len(token) > max_bytes:
        return None
    parts = token.split(".")  # the verifier checks the segments' alphabet; this reads one
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(_jws._b64decode(parts[1]))
    except (ValueError, RecursionError, TypeError):  # binascii.Error is a ValueError
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("ctx"), dict):
        return None
    jti, run_id, sub = payload.get("jti"), payload["ctx"].get("run_id"), payload.get("sub")
    ancestors = payload.get("ancestors", [])
    if not isinstance(ancestors, list) or len(ancestors) > MAX_ACT_NESTING:
        return None
    named = [(_JTI, jti), (_RUN, run_id), (_SUB, sub), *((_JTI, a) for a in ancestors)]
    if not all(isinstance(v, str) and pattern.fullmatch(v) for pattern, v in named):
        return None
    return RevocationTarget(cast(str, jti), tuple(ancestors), cast(str, run_id), cast(str, sub))


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
    def revoke_run(self, run_id: str) -> None: ...
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

    remote = False

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 epoch: str | None = None) -> None:
        self._clock = clock
        self.epoch = epoch or new_epoch()  # this process's memory is the registry's
        self.began = int(clock())
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

    def claim_once(self, key: str, *, ttl: int, issued_at: int | None = None) -> bool:
        if _predates(issued_at, self.began):
            raise PredatesMemory
        now = self._clock()
        with self._lock:
            if len(self._once) > 100_000:
                self._once = {k: t for k, t in self._once.items() if t > now}
            if self._once.get(key, 0) > now:
                return False
            self._once[key] = now + ttl
            return True

    def begin(self, target: RevocationTarget | None, *,
              claim: tuple[str, int] | None = None,
              issued_at: int | None = None) -> PendingCheck:
        try:
            claimed = (self.claim_once(claim[0], ttl=claim[1], issued_at=issued_at)
                       if claim is not None else True)
        except PredatesMemory:
            return _Answered(self.check, None)
        return _Answered(self.check, claimed)

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
            return _Answered(self.check, True)
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


class _Answered:
    """A :class:`PendingCheck` whose claim is already answered (None: it predates the
    registry's memory); its check is a plain check."""

    def __init__(self, check: Callable[[AccessClaims], None], claimed: bool | None) -> None:
        self._check, self._claimed = check, claimed

    def claimed(self) -> bool:
        if self._claimed is None:
            raise PredatesMemory
        return self._claimed

    def check(self, claims: AccessClaims) -> None:
        self._check(claims)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


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
        import redis

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
        import redis

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
        import redis

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
