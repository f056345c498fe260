"""Checks sent ahead: the registry's commands written to Redis before the signature check, their
answers read when the check needs them (:meth:`RedisRevocationStore.begin`), on connections
the store keeps.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, Self

import redis

from orchestrator.errors import PredatesMemory, Unavailable
from orchestrator.identity import AccessClaims, RevocationTarget


class RedisLike(Protocol):
    """What the registry uses of a redis-py client."""

    def set(self, *args: object, **kwargs: object) -> object: ...
    def incr(self, name: str) -> int: ...
    def get(self, name: str) -> object: ...
    def mget(self, keys: list[str]) -> list[object]: ...
    def ping(self) -> object: ...
    def delete(self, *names: str) -> object: ...
    def execute_command(self, *args: object) -> object: ...
    @property
    def connection_pool(self) -> Any: ...


# An answer read this long after its query was sent decides nothing: the check is asked again.
IN_FLIGHT_MAX_AGE_SECONDS = 0.05


def claim_answer(answer: object) -> bool:
    """What a claim command answered: a SET NX (OK, or True through redis-py's reply
    callbacks; nil when taken) or the claim script (1, 0, or -1: it predates the memory)."""
    if answer == -1:
        raise PredatesMemory
    return answer not in (None, 0)


def unreachable() -> Unavailable:
    return Unavailable("revocation registry unreachable", reason="revocation_unavailable")


class Connections:
    """The connections checks sent ahead (:class:`InFlight`) use: taken from the client's pool
    once, each then used by one check at a time and kept for the next.

    Taking a connection from redis-py's pool and giving it back cost about 20 µs a check (locks,
    metrics and a health probe), near a tenth of a service's whole check; a kept connection is
    only polled (one syscall): one that Redis has closed (a restart) or that holds data is
    closed, and the send reopens it. A connection that failed, or that comes back after
    :meth:`close`, goes back to the pool closed. The pool still counts kept connections as in
    use, so closing the client closes them too. A forked child keeps none of its parent's.
    """

    MAX_KEPT = 64

    def __init__(self, client: RedisLike) -> None:
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


_ALL_CONNECTIONS: weakref.WeakSet[Connections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for connections in list(_ALL_CONNECTIONS):
        connections.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class InFlight:
    """Commands sent on one of the store's connections (:class:`Connections`), their answers
    read on first use.

    The connection is the caller's alone until the answers are read, then kept for the next
    check; after a failure it is closed and dropped, since a half-read answer would corrupt it.
    Sending is retried once on a fresh connection (a kept one may be stale after a Redis
    restart); reading is not, since the claim may already have been made.
    """

    def __init__(self, connections: Connections, commands: list[tuple[object, ...]], *,
                 claiming: bool, target: RevocationTarget | None,
                 ask: Callable[[AccessClaims], None],
                 refuse: Callable[[AccessClaims, list[Any]], None]) -> None:
        """``ask``: the store's own check, asked afresh; ``refuse``: the refusal the answers to
        the check's keys imply, raised."""
        self._claiming, self._target, self._ask, self._refuse = claiming, target, ask, refuse
        self._count = len(commands)
        self._answers: list[Any] | None = None
        self._connections = connections
        try:
            self._conn: Any = connections.take()
        except (redis.RedisError, OSError) as exc:
            raise unreachable() from exc
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
                    raise unreachable() from exc
            except redis.RedisError as exc:  # e.g. an error answer to the connection handshake
                self._give_up(conn)
                raise unreachable() from exc
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
                raise unreachable()
            try:
                self._answers = [conn.read_response() for _ in range(self._count)]
            except BaseException as exc:
                self._give_up(conn)  # a half-read answer would corrupt the next command's
                if isinstance(exc, (redis.RedisError, OSError)):
                    raise unreachable() from exc
                raise
            self._conn = None
            self._connections.keep(conn)
        return self._answers

    def claimed(self) -> bool:
        answers = self._read()
        return claim_answer(answers[0]) if self._claiming else True

    def check(self, claims: AccessClaims) -> None:
        answers = self._read()
        if self._target is None or RevocationTarget.of(claims) != self._target:
            self._ask(claims)  # the answer is about other names: ask about these
            return
        if time.monotonic() - self._sent_at > IN_FLIGHT_MAX_AGE_SECONDS:
            self._ask(claims)  # verifying took long (a key fetch): ask again, now
            return
        self._refuse(claims, answers[-1])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._read()
            except Unavailable:
                pass  # the caller is already leaving with its own answer
