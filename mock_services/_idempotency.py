"""``Idempotency-Key`` on mutating routes: a retried request replays the first answer.

Keys are scoped per service (one cache per app) and per owner (:func:`owner_of`): the user (the
token's ``sub``) and the client presenting the token (its ``client_id``, the acting agent), so
one agent's predictable key never answers or blocks another agent's request. The first request
under a key runs and, when it succeeds (2xx), its status and body are kept (or, failing that,
still given); the same key with the same request (method, path, query and canonical JSON body)
replays them, changing nothing; with another request it is 422 ``idempotency_key_reused``.
Refused or failed requests are not kept, so a corrected retry may reuse the key. Requests under
keys are serialised per service, so two concurrent retries cannot both run.

Each act gets one ``ok`` audit record (two only in the cases docs/journal.md lists), written by
one request at a time. A kept answer is ``unaudited`` until the caller has written its act's
record and marks it (:class:`Recording`, keeping its expiry), and names until when a request is
writing it (``auditing_until``, a lease of :data:`LEASE_SECONDS`): the first request holds it
from keeping its answer, and gives it up at once if its record cannot be written. A replay of an
unaudited answer whose lease is running is 409 ``idempotency_key_in_use`` (the record may be
being written); once it is over or given up, the replay takes it (compare and set: of two, one
wins, the other is 409) and the caller records the replay as the act itself.

Where the answers are kept (:func:`idempotency_cache`):

* with ``INFRABOT_REDIS_URL`` set, in that Redis (:class:`RedisIdempotencyCache`), shared by
  every process and outliving a restart of ``serve``. A request first claims its key (``SET NX``
  with a short lease, :data:`LEASE_SECONDS`, the claim naming the request); a second request
  under a key whose first is still in flight (in another process, or in one that died in it,
  until the lease ends) is 409 ``idempotency_key_in_use``, which the agents retry. A first
  request keeps its answer, or frees the key, only while the claim is its own: one that
  outlived its lease never touches a later request's claim. Redis cannot be reached: 503
  ``idempotency_unavailable`` before anything is done (fail closed);
* otherwise in the process (:class:`IdempotencyCache`, the embedded mode).

An answer replays for ``INFRABOT_IDEMPOTENCY_TTL_SECONDS`` (default :data:`TTL_SECONDS`, 24 h,
Stripe's window), then expires; in process at most :data:`MAX_KEYS` per service are kept too,
the oldest dropped first, so a long run of workflows does not grow the process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import redis
from anyio import to_thread
from starlette.responses import Response

from mock_services._bearer import ApiError
from mock_services._idempotency_redis import (
    IF_CLAIMED,
    Kept,
    decode,
    encode,
    in_use,
    pending,
    unavailable,
)
from orchestrator.config import Settings
from orchestrator.errors import Unavailable

log = logging.getLogger("mock_services")

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
TTL_SECONDS = 24 * 3600
MAX_KEYS = 2_000  # about 1 KB each (the answer's body, its fingerprint and the key)
# How long a first request holds its key in Redis before its answer is kept, and a request the
# writing of its act's audit record (in Redis and in process)
LEASE_SECONDS = 10
_PREFIX = "infrabot:idempotency:"


class Answer(NamedTuple):
    response: Response
    replayed: bool
    unaudited: Kept | None = None  # kept, its act's record this request's to write (a lease)
    key: tuple[str, str] = ("", "")  # the cache's key: the owner and the Idempotency-Key


def owner_of(principal: str, client: str) -> str:  # the user and the presenting client
    return f"{principal}\n{client}"  # neither holds a newline


def fingerprint(method: str, path: str, query: str, body: bytes, parsed: object) -> str:
    """What makes two requests the same: JSON bodies compare by content, not by spelling."""
    canonical = (json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
                 if parsed is not None else body)
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ApiError(400, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-255 visible ASCII characters")
    return key


class IdempotencyCache:
    """The answers in this process (embedded mode); the base of :class:`RedisIdempotencyCache`,
    which keeps them elsewhere through the same steps (claim, keep, release, audited)."""

    def __init__(self, clock: Callable[[], float], *, ttl_seconds: float = TTL_SECONDS,
                 max_entries: int = MAX_KEYS) -> None:
        self._clock = clock
        self._ttl = ttl_seconds
        self._max = max_entries
        self._kept: OrderedDict[tuple[str, str], Kept] = OrderedDict()
        self._lock: asyncio.Lock | None = None

    async def run(self, owner: str, key: str, print_: str,
                  produce: Callable[[], Awaitable[Response]]) -> Answer:
        """The answer to this request under ``owner``'s ``key`` (see :class:`Answer`)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            claim = secrets.token_hex(16)  # this request, in the claim it may hold on the key
            kept = await self._claim((owner, key), print_, now, claim)
            if kept is not None:
                if kept.fingerprint != print_:
                    raise ApiError(422, "idempotency_key_reused",
                                   "this Idempotency-Key was used for a different request")
                taken = None
                if not kept.audited:  # the act's record is written by one request at a time
                    taken = kept._replace(auditing_until=now + LEASE_SECONDS)
                    if kept.auditing_until > now or not await self._swap_kept((owner, key),
                                                                              kept, taken):
                        raise in_use()
                replay = Response(kept.body, kept.status, {REPLAY_HEADER: "true"},
                                  kept.media_type)
                return Answer(replay, True, taken, (owner, key))
            try:
                response = await produce()
            except BaseException:
                await self._release((owner, key), print_, claim)
                raise
            body = getattr(response, "body", None)
            if 200 <= response.status_code < 300 and isinstance(body, bytes):
                kept = Kept(print_, response.status_code, body, response.media_type,
                            now + self._ttl, False, self._clock() + LEASE_SECONDS)
                await self._keep((owner, key), claim, kept)
                return Answer(response, False, kept, (owner, key))
            await self._release((owner, key), print_, claim)
            return Answer(response, False)

    async def audited(self, answer: Answer, written: bool = True) -> None:
        """The record of ``answer``'s act is written (marked audited) or could not be (its lease
        given up); only while the answer holds this request's lease (never raises)."""
        if answer.unaudited is not None:
            await self._swap_kept(answer.key, answer.unaudited, answer.unaudited._replace(
                audited=written, auditing_until=0.0))

    async def _swap_kept(self, key: tuple[str, str], was: Kept, value: Kept) -> bool:
        """``value`` under ``key`` if it still holds ``was`` (no await: atomic on the loop)."""
        if self._kept.get(key) is not was:
            return False
        self._kept[key] = value  # its place in expiry order kept
        return True

    def __len__(self) -> int:  # how many answers are kept
        return len(self._kept)

    async def _claim(self, key: tuple[str, str], print_: str, now: float,
                     claim: str) -> Kept | None:
        """The answer kept under ``key``, or None: this request (``claim``) runs."""
        self._expire(now)
        kept = self._kept.get(key)
        return kept if kept is not None and kept.expires_at > now else None

    async def _keep(self, key: tuple[str, str], claim: str, kept: Kept) -> None:
        self._kept[key] = kept
        self._kept.move_to_end(key)
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    async def _release(self, key: tuple[str, str], print_: str, claim: str) -> None:
        """The first request kept no answer: the key is free again."""

    def _expire(self, now: float) -> None:
        """Drop the expired answers, all at the front (one TTL and a clock that does not go back
        keep them in expiry order, marking keeps both); ``run`` still checks the one it finds."""
        while self._kept and next(iter(self._kept.values())).expires_at <= now:
            self._kept.popitem(last=False)


class Recording:
    """The record of ``answer``'s act, being written under its lease: await this once it is
    written (the answer is marked audited), :meth:`failed` if it could not be (the lease is given
    up, so a retry may write it)."""

    def __init__(self, cache: IdempotencyCache, answer: Answer) -> None:
        self._cache, self._answer = cache, answer

    def __call__(self) -> Awaitable[None]:
        return self._cache.audited(self._answer)

    def failed(self) -> Awaitable[None]:
        return self._cache.audited(self._answer, written=False)


class RedisIdempotencyCache(IdempotencyCache):
    """The answers in Redis under ``infrabot:idempotency:<service>:<hash of owner and key>``,
    expiring after the TTL (a claim after :data:`LEASE_SECONDS`); calls run off the loop."""

    def __init__(self, client: Any, service: str, clock: Callable[[], float], *,
                 ttl_seconds: float = TTL_SECONDS) -> None:
        super().__init__(clock, ttl_seconds=ttl_seconds)
        self._r = client
        self._service = service
        self._if_claimed = client.register_script(IF_CLAIMED)

    @classmethod
    def from_url(cls, url: str, service: str, clock: Callable[[], float], *,
                 ttl_seconds: float = TTL_SECONDS) -> RedisIdempotencyCache:
        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                      health_check_interval=30)
        return cls(client, service, clock, ttl_seconds=ttl_seconds)

    def __len__(self) -> int:
        return sum(1 for _ in self._r.scan_iter(match=f"{_PREFIX}{self._service}:*", count=500))

    def close(self) -> None:
        self._r.close()

    def _name(self, key: tuple[str, str]) -> str:
        digest = hashlib.sha256(f"{key[0]}\n{key[1]}".encode()).hexdigest()
        return f"{_PREFIX}{self._service}:{digest}"

    async def _claim(self, key: tuple[str, str], print_: str, now: float,
                     claim: str) -> Kept | None:
        name, claiming = self._name(key), pending(print_, claim)
        for _ in range(2):  # a kept answer may expire between the two calls: claim again
            claimed = await self._redis(lambda: self._r.set(name, claiming, nx=True,
                                                             ex=LEASE_SECONDS))
            if claimed:
                return None
            found = await self._redis(lambda: self._r.get(name))
            if found is not None:
                return decode(found, now)
        raise unavailable()

    async def _keep(self, key: tuple[str, str], claim: str, kept: Kept) -> None:
        if await self._swap(key, pending(kept.fingerprint, claim), encode(kept),
                            max(1, int(self._ttl)), "idempotency_answer_not_kept") == 0:
            log.warning("idempotency_claim_lost", extra={"service": self._service})

    async def _swap_kept(self, key: tuple[str, str], was: Kept, value: Kept) -> bool:
        """Compare and set, keeping the expiry; Redis down: False (the lease ends by itself)."""
        return await self._swap(key, encode(was), encode(value), 0,
                                "idempotency_audit_lease_not_set") == 1

    async def _release(self, key: tuple[str, str], print_: str, claim: str) -> None:
        # Only this request's own claim; else the claim ends with its lease.
        await self._swap(key, pending(print_, claim), "", 0, "idempotency_claim_not_released")

    async def _swap(self, key: tuple[str, str], was: str, value: str, seconds: int,
                    failed: str) -> int | None:
        """:data:`IF_CLAIMED` on ``key``; Redis down: None, ``failed`` logged (never raised)."""
        try:
            return int(await self._redis(lambda: self._if_claimed(
                keys=[self._name(key)], args=[was, value, seconds])))
        except Unavailable:
            log.warning(failed, extra={"service": self._service})
            return None

    @staticmethod
    async def _redis(call: Callable[[], Any]) -> Any:
        try:
            return await to_thread.run_sync(call)
        except (redis.RedisError, OSError) as exc:
            raise unavailable() from exc


def idempotency_cache(service: str, settings: Settings,
                      clock: Callable[[], float]) -> IdempotencyCache:
    """Redis when ``settings.redis_url`` is set (shared, survives a restart), else in process."""
    ttl = settings.idempotency_ttl_seconds
    if settings.redis_url:
        return RedisIdempotencyCache.from_url(settings.redis_url, service, clock, ttl_seconds=ttl)
    return IdempotencyCache(clock, ttl_seconds=ttl)
