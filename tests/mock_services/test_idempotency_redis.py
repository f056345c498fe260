"""Idempotency-Key answers kept in the registry's Redis: shared by every cache on it (so by a
restarted ``serve``), replayed with the same status and body, expiring after the configured TTL,
and refused before anything runs when Redis cannot be reached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis
from pydantic import ValidationError
from starlette.responses import Response

from mock_services._bearer import ApiError
from mock_services._idempotency import (
    LEASE_SECONDS,
    TTL_SECONDS,
    Answer,
    IdempotencyCache,
    RedisIdempotencyCache,
    idempotency_cache,
    owner_of,
)
from orchestrator.config import Settings
from orchestrator.errors import Unavailable

pytestmark = pytest.mark.redis
SAM, KEY, PRINT = "user:sam", "run-1.infrabot.2", "fingerprint-1"


@pytest.fixture
def caches(redis_url: str) -> Iterator[Callable[..., RedisIdempotencyCache]]:
    """Caches of the github service on the test Redis, each like one ``serve`` process."""
    made: list[RedisIdempotencyCache] = []

    def make(ttl: float = TTL_SECONDS, url: str = redis_url) -> RedisIdempotencyCache:
        cache = RedisIdempotencyCache.from_url(url, "github", lambda: 1000.0, ttl_seconds=ttl)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def producer(status: int, body: bytes, runs: list[int]) -> Callable[[], Awaitable[Response]]:
    async def produce() -> Response:
        runs.append(status)
        return Response(body, status, media_type="application/json")
    return produce


def send(cache: IdempotencyCache, status: int = 201, body: bytes = b'{"id": 1}',
         print_: str = PRINT, runs: list[int] | None = None,
         principal: str = SAM) -> tuple[Response, bool]:
    produce = producer(status, body, [] if runs is None else runs)
    answer = asyncio.run(cache.run(principal, KEY, print_, produce))
    asyncio.run(cache.audited(answer))  # the caller wrote its record (else a replay is 409)
    return answer.response, answer.replayed


def test_a_restarted_service_replays_the_original_answer_and_acts_once(
        caches: Callable[..., RedisIdempotencyCache]) -> None:
    runs: list[int] = []
    first, replayed = send(caches(), runs=runs)
    assert (first.status_code, replayed) == (201, False)
    again, replayed = send(caches(), status=200, body=b'{"id": 2}', runs=runs)  # "restarted"
    assert replayed is True and runs == [201]
    assert (again.status_code, again.body, again.media_type) == (201, b'{"id": 1}',
                                                                 "application/json")
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_answer_expires_after_the_configured_ttl(
        caches: Callable[..., RedisIdempotencyCache], redis_url: str) -> None:
    cache = caches(ttl=120)
    send(cache)
    client = redis.Redis.from_url(redis_url)
    try:
        [name] = client.keys("infrabot:idempotency:github:*")
        assert 110 <= client.ttl(name) <= 120
        assert KEY.encode() not in name and SAM.encode() not in name  # hashed, not spelled out
    finally:
        client.close()
    assert len(cache) == 1


def test_the_same_key_for_another_request_is_422(
        caches: Callable[..., RedisIdempotencyCache]) -> None:
    send(caches())
    with pytest.raises(ApiError) as caught:
        send(caches(), print_="another request")
    assert (caught.value.status, caught.value.reason) == (422, "idempotency_key_reused")


def test_keys_are_per_principal_and_per_service(
        caches: Callable[..., RedisIdempotencyCache], redis_url: str) -> None:
    runs: list[int] = []
    send(caches(), runs=runs)
    send(caches(), runs=runs, principal="user:alex")
    other = RedisIdempotencyCache.from_url(redis_url, "aws", lambda: 1000.0)
    try:
        send(other, runs=runs)
    finally:
        other.close()
    assert runs == [201, 201, 201]


def test_a_refused_request_keeps_nothing_so_a_corrected_retry_runs(
        caches: Callable[..., RedisIdempotencyCache]) -> None:
    runs: list[int] = []
    refused, _ = send(caches(), status=422, body=b'{"reason": "validation_failed"}', runs=runs)
    done, replayed = send(caches(), runs=runs)
    assert (refused.status_code, done.status_code, replayed, runs) == (422, 201, False,
                                                                       [422, 201])


def test_a_failing_handler_releases_its_claim(
        caches: Callable[..., RedisIdempotencyCache]) -> None:
    async def broken() -> Response:
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError):
        asyncio.run(caches().run(SAM, KEY, PRINT, broken))
    assert send(caches())[1] is False


def test_a_key_in_flight_elsewhere_is_409_until_its_lease_ends(
        caches: Callable[..., RedisIdempotencyCache], redis_url: str) -> None:
    """Another process holds the key's claim (its request in flight, or it died in it)."""
    first, second = caches(), caches()
    runs: list[int] = []

    async def slow() -> Response:
        with pytest.raises(ApiError) as caught:
            await second.run(SAM, KEY, PRINT, producer(201, b"{}", runs))
        assert (caught.value.status, caught.value.reason) == (409, "idempotency_key_in_use")
        return Response(b'{"id": 1}', 201, media_type="application/json")

    response, replayed, *_ = asyncio.run(first.run(SAM, KEY, PRINT, slow))
    assert (response.status_code, replayed, runs) == (201, False, [])
    client = redis.Redis.from_url(redis_url)
    try:
        [name] = client.keys("infrabot:idempotency:github:*")
        client.set(name, '{"pending": "x"}', ex=LEASE_SECONDS)  # a claim left by a dead process
        with pytest.raises(ApiError) as caught:
            send(caches(), runs=runs)
        assert caught.value.reason == "idempotency_key_in_use"
        client.delete(name)  # the lease ended
    finally:
        client.close()
    assert send(caches(), runs=runs)[1] is False and runs == [201]


def test_a_value_this_cache_did_not_write_is_503_not_500(
        caches: Callable[..., RedisIdempotencyCache], redis_url: str) -> None:
    """A damaged or foreign value under the key: unavailable (503), and nothing runs."""
    runs: list[int] = []
    assert send(caches(), runs=runs)[1] is False and runs == [201]
    client = redis.Redis.from_url(redis_url)
    try:
        [name] = client.keys("infrabot:idempotency:github:*")
        for foreign in (b"not json", b'{"status": 201}', b"[]"):
            client.set(name, foreign)
            with pytest.raises(Unavailable) as caught:
                send(caches(), runs=runs)
            assert (caught.value.status, caught.value.reason) == (503, "idempotency_unavailable")
    finally:
        client.close()
    assert runs == [201]


def test_redis_unreachable_is_503_before_anything_runs(
        caches: Callable[..., RedisIdempotencyCache]) -> None:
    runs: list[int] = []
    with pytest.raises(Unavailable) as caught:
        send(caches(url="redis://127.0.0.1:1/0"), runs=runs)
    assert (caught.value.status, caught.value.reason) == (503, "idempotency_unavailable")
    assert runs == []


def test_the_cache_is_in_redis_only_when_the_registry_is(redis_url: str) -> None:
    shared = idempotency_cache("github", Settings(redis_url=redis_url,
                                                  idempotency_ttl_seconds=3600), lambda: 0.0)
    assert isinstance(shared, RedisIdempotencyCache) and shared._ttl == 3600
    shared.close()
    local = idempotency_cache("github", Settings(redis_url=None), lambda: 0.0)
    assert type(local) is IdempotencyCache and local._ttl == TTL_SECONDS


def test_the_ttl_must_outlast_a_run() -> None:
    with pytest.raises(ValidationError, match="idempotency_ttl_seconds must be >= run_deadline"):
        Settings(idempotency_ttl_seconds=600, run_deadline_seconds=960)
    with pytest.raises(ValidationError):
        Settings(idempotency_ttl_seconds=59, run_deadline_seconds=5)
    assert Settings().idempotency_ttl_seconds == TTL_SECONDS == 86400


@pytest.mark.parametrize("first_status", [500, 201])
def test_a_first_request_that_outlived_its_lease_leaves_the_next_claim_alone(
        caches: Callable[..., RedisIdempotencyCache], monkeypatch: pytest.MonkeyPatch,
        first_status: int) -> None:
    """Request A outlives its lease; B claims the key and is in flight when A ends. A's end
    (freeing the key after a 500, keeping its answer after a 201) must not touch B's claim: a
    third request C still finds the key in use instead of acting a third time."""
    monkeypatch.setattr("mock_services._idempotency.LEASE_SECONDS", 1)
    a, b, c = caches(), caches(), caches()
    runs: list[str] = []

    async def scenario() -> list[object]:
        b_in_flight, b_may_end = asyncio.Event(), asyncio.Event()

        async def produce_b() -> Response:
            runs.append("b")
            b_in_flight.set()
            await b_may_end.wait()
            return Response(b'{"id": 2}', 201, media_type="application/json")

        async def produce_a() -> Response:
            runs.append("a")
            await asyncio.sleep(1.5)  # past A's one-second lease
            tasks.append(asyncio.create_task(b.run(SAM, KEY, PRINT, produce_b)))
            await b_in_flight.wait()
            return Response(b'{"id": 1}', first_status, media_type="application/json")

        tasks: list[asyncio.Task[Answer]] = []
        await a.run(SAM, KEY, PRINT, produce_a)
        try:
            await c.run(SAM, KEY, PRINT, producer(201, b'{"id": 3}', []))
            third: object = "acted"
        except ApiError as exc:
            third = exc.reason
        b_may_end.set()
        [b_done] = [await t for t in tasks]
        await b.audited(b_done)  # its record written
        return [third, b_done.response.body, b_done.replayed]

    assert asyncio.run(scenario()) == ["idempotency_key_in_use", b'{"id": 2}', False]
    assert runs == ["a", "b"]
    response, replayed = send(c, runs=runs)  # B's answer is the one kept
    assert (response.body, replayed, runs) == (b'{"id": 2}', True, ["a", "b"])


def test_an_answer_is_unaudited_until_marked_and_marking_keeps_its_expiry(
        caches: Callable[..., RedisIdempotencyCache], redis_url: str) -> None:
    """The act's audit record failed: the replay is handed back unaudited (the caller records it
    as the act) until it is marked, by any process; the mark keeps the answer's expiry."""
    first, second = caches(ttl=120), caches(ttl=120)
    produce = producer(201, b'{"id": 1}', [])
    kept = asyncio.run(first.run(SAM, KEY, PRINT, produce))
    assert kept.unaudited is not None and not kept.replayed
    asyncio.run(first.audited(kept, written=False))  # its record failed: the lease given up
    replay = asyncio.run(second.run(SAM, KEY, PRINT, produce))
    assert replay.replayed and replay.unaudited is not None
    client = redis.Redis.from_url(redis_url)
    try:
        [name] = client.keys("infrabot:idempotency:github:*")
        client.expire(name, 50)
        asyncio.run(second.audited(replay))
        assert 40 <= client.ttl(name) <= 50
    finally:
        client.close()
    again = asyncio.run(first.run(SAM, KEY, PRINT, produce))
    assert again.replayed and again.unaudited is None
    asyncio.run(first.audited(kept))  # a stale mark changes nothing
    assert asyncio.run(first.run(SAM, KEY, PRINT, produce)).unaudited is None


def test_keys_are_per_presenting_client(caches: Callable[..., RedisIdempotencyCache]) -> None:
    runs: list[int] = []
    for client in ("agent:argocd", "agent:cleanup", "agent:argocd"):
        send(caches(), runs=runs, principal=owner_of(SAM, client))
    assert runs == [201, 201]
