"""Exactly one ``ok`` record per act under an Idempotency-Key, never two and never none: a kept
answer names who is writing its act's record (a lease). A replay while that record is being
written is 409 ``idempotency_key_in_use``; once it is written the replay is
``idempotent_replay``; if it could not be written the lease is given up at once and one retry
takes it (compare and set) and writes the record. In process and in Redis."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from starlette.responses import Response

from mock_services._bearer import ApiError
from mock_services._idempotency import (
    LEASE_SECONDS,
    Answer,
    IdempotencyCache,
    RedisIdempotencyCache,
    owner_of,
)
from mock_services._idempotency_redis import Kept, decode, encode
from orchestrator.audit import AuditRecord
from orchestrator.errors import Unavailable

CANARY = "i-0a1b2c3d4e5f60003"
CLEAN = {"actors": ("agent:cleanup", "agent:argocd", "agent:infrabot"),
         "scope": "urn:infra:infrastructure:clean"}
OWNER, PRINT = owner_of("user:sam", "agent:cleanup"), "fingerprint-1"
KEY = {"Idempotency-Key": "run-x.cleanup.0", "X-Request-Id": "run-x.cleanup.0"}
TERMINATE, PARAMS = "aws.ec2.terminate_instances", {"InstanceIds": [CANARY]}
OK, REPLAY = ("allow", "ok", 200), ("allow", "idempotent_replay", 200)
IN_USE = ("deny", "idempotency_key_in_use", 409)
BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


class Appends:
    """The audit store's ``append``, wrapped: the next ``holds`` records of the act wait for
    :meth:`release` (``writing`` is set once one waits), and the next ``fails`` of them fail."""

    def __init__(self, stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self._append = stack.audit.append
        self.holds = self.fails = 0
        self.writing, self._may_write = threading.Event(), threading.Event()
        monkeypatch.setattr(stack.audit, "append", self)

    def __call__(self, record: AuditRecord) -> Any:
        if record.action == "instances:terminate" and record.status == 200:
            if self.holds:
                self.holds -= 1
                self.writing.set()
                assert self._may_write.wait(30)
            if self.fails:
                self.fails -= 1
                raise Unavailable("the audit store is full", reason="audit_unavailable")
        return self._append(record)

    def release(self) -> None:
        self._may_write.set()


@pytest.fixture(params=BACKENDS)
def aws(request: pytest.FixtureRequest, stack_factory: Any) -> Any:
    """The aws service, its answers kept in process or in the test Redis."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return stack_factory(services=("aws",), redis_url=redis_url)


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def terminate(stack: Any, token: str) -> httpx.Response:
    with httpx.Client(timeout=30.0) as client:  # one per thread
        return stack.call(client, TERMINATE, PARAMS, token=token, headers=KEY)


def outcome(response: httpx.Response) -> tuple[int, str | None]:
    replayed = response.headers.get("idempotent-replayed")
    return response.status_code, response.json().get("reason") if replayed is None else replayed


def records(stack: Any) -> Counter[tuple[str, str, int]]:
    return Counter((r.decision, r.reason, r.status) for r in stack.audit.query()
                   if r.request_id == KEY["X-Request-Id"])


def test_a_replay_while_the_first_record_is_written_is_409_then_a_replay(
        aws: Any, monkeypatch: pytest.MonkeyPatch, background: ThreadPoolExecutor) -> None:
    appends, token = Appends(aws, monkeypatch), aws.token("aws", **CLEAN)
    appends.holds = 1
    first = background.submit(terminate, aws, token)
    assert appends.writing.wait(30)  # the first acted, kept its answer and is writing its record
    racing = terminate(aws, token)
    appends.release()
    assert outcome(racing) == (409, "idempotency_key_in_use")
    assert outcome(first.result(30)) == (200, None)  # acted, not replayed
    assert outcome(terminate(aws, token)) == (200, "true")
    assert records(aws) == Counter([OK, IN_USE, REPLAY])


def test_a_failed_record_is_written_once_by_the_retry(
        aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    appends, token = Appends(aws, monkeypatch), aws.token("aws", **CLEAN)
    appends.fails = 2  # the act's record, and then its first retry's
    answers = [terminate(aws, token) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 200, 200]
    assert [a.json()["reason"] for a in answers[:2]] == ["audit_unavailable"] * 2
    assert records(aws) == Counter([OK, REPLAY])  # no 409: each failure gave the lease up
    assert [r.reason for r in aws.audit.query() if r.request_id == KEY["X-Request-Id"]] == [
        "ok", "idempotent_replay"]


def test_two_retries_after_a_failed_record_write_it_once(
        aws: Any, monkeypatch: pytest.MonkeyPatch, background: ThreadPoolExecutor) -> None:
    appends, token = Appends(aws, monkeypatch), aws.token("aws", **CLEAN)
    appends.fails = 1
    assert outcome(terminate(aws, token)) == (503, "audit_unavailable")
    appends.holds = 1
    retry = background.submit(terminate, aws, token)
    assert appends.writing.wait(30)  # the retry took the lease and is writing the act's record
    other = terminate(aws, token)
    appends.release()
    assert outcome(other) == (409, "idempotency_key_in_use")
    assert outcome(retry.result(30)) == (200, "true")
    assert outcome(terminate(aws, token)) == (200, "true")
    assert records(aws) == Counter([OK, IN_USE, REPLAY])


def produce(runs: list[int]) -> Callable[[], Awaitable[Response]]:
    async def run() -> Response:
        runs.append(201)
        return Response(b'{"id": 1}', 201, media_type="application/json")
    return run


async def replay(cache: IdempotencyCache, runs: list[int]) -> tuple[str, Answer | None]:
    """What a replay under the key is: taken (its act's record to write), replayed or 409."""
    try:
        answer = await cache.run(OWNER, "k", PRINT, produce(runs))
    except ApiError as exc:
        return exc.reason, None
    assert answer.replayed
    return "taken" if answer.unaudited is not None else "replayed", answer


async def reason(cache: IdempotencyCache, runs: list[int]) -> str:
    return (await replay(cache, runs))[0]


def test_an_unmarked_answer_is_in_use_until_its_lease_ends_or_is_given_up() -> None:
    """In process: a first request that died before writing its record holds the lease until it
    ends; one whose record failed gives it up at once; a taken lease is held the same way."""
    now, runs = [1000.0], list[int]()
    cache = IdempotencyCache(lambda: now[0])

    async def scenario() -> list[str]:
        seen = []
        first = await cache.run(OWNER, "k", PRINT, produce(runs))
        assert not first.replayed and first.unaudited is not None
        seen.append(await reason(cache, runs))
        now[0] += LEASE_SECONDS + 1  # the first never wrote its record (it died)
        taken = await cache.run(OWNER, "k", PRINT, produce(runs))
        assert taken.unaudited is not None
        seen.append(await reason(cache, runs))
        await cache.audited(first)  # a stale mark, its lease long taken: nothing changes
        seen.append(await reason(cache, runs))
        await cache.audited(taken, written=False)  # its record failed: given up at once
        retried = await cache.run(OWNER, "k", PRINT, produce(runs))
        await cache.audited(retried)
        seen.append(await reason(cache, runs))
        return seen

    assert asyncio.run(scenario()) == ["idempotency_key_in_use", "idempotency_key_in_use",
                                       "idempotency_key_in_use", "replayed"]
    assert runs == [201]


@pytest.fixture
def caches(redis_url: str) -> Iterator[Callable[[], RedisIdempotencyCache]]:
    made: list[RedisIdempotencyCache] = []

    def make() -> RedisIdempotencyCache:
        made.append(RedisIdempotencyCache.from_url(redis_url, "aws", lambda: 1000.0))
        return made[-1]

    yield make
    for cache in made:
        cache.close()


@pytest.mark.redis
def test_of_two_processes_replaying_a_given_up_lease_one_takes_it(
        caches: Callable[[], RedisIdempotencyCache],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the answer with no lease running before either sets one: the compare and set
    lets one take it; the other is 409."""
    runs: list[int] = []
    one, two = caches(), caches()
    first = asyncio.run(one.run(OWNER, "k", PRINT, produce(runs)))
    asyncio.run(one.audited(first, written=False))

    async def scenario() -> list[str]:
        both_read, read = asyncio.Event(), []
        for cache in (one, two):
            claim = cache._claim

            async def claimed(*args: Any, _claim: Any = claim) -> Any:
                found = await _claim(*args)
                read.append(found)
                if len(read) == 2:
                    both_read.set()
                await both_read.wait()
                return found

            monkeypatch.setattr(cache, "_claim", claimed)
        return sorted(await asyncio.gather(reason(one, runs), reason(two, runs)))

    assert asyncio.run(scenario()) == ["idempotency_key_in_use", "taken"]
    assert runs == [201]


@pytest.mark.redis
@pytest.mark.parametrize(("stored", "then"), [
    ({}, ["replayed"]),  # before the flag: read as audited
    ({"audited": True}, ["replayed"]),
    ({"audited": False}, ["taken", "idempotency_key_in_use", "replayed"]),
])
def test_an_answer_kept_before_the_lease_replays(
        caches: Callable[[], RedisIdempotencyCache], redis_url: str, stored: dict[str, bool],
        then: list[str]) -> None:
    """An answer an older serve kept (no lease; maybe no ``audited`` flag either), spelled as it
    spelled it: audited, it replays; not, the first replay takes the lease and marks it."""
    cache, runs = caches(), list[int]()
    name = cache._name((OWNER, "k"))
    old = {"fingerprint": PRINT, "status": 201, "body": "eyJpZCI6IDF9",
           "media_type": "application/json", **stored}
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(name, json.dumps(old), ex=3600)
    finally:
        client.close()

    async def scenario() -> list[str]:
        seen, taken = await replay(cache, runs)
        if taken is None or taken.unaudited is None:
            return [seen]
        in_use = await reason(cache, runs)  # the act's record is being written
        await cache.audited(taken)
        return [seen, in_use, await reason(cache, runs)]

    assert asyncio.run(scenario()) == then
    assert runs == []


@pytest.mark.parametrize("until", [1010, 1010.0, 1010.25])
def test_a_lease_is_spelled_as_it_is_read_back(until: float) -> None:
    """Compare and set matches the stored spelling: an answer read back and written again is
    the same string, whatever number the clock gave (an int clock once made them differ, and
    a replay could never take the lease)."""
    kept = Kept("print", 201, b'{"id": 1}', "application/json", 0.0, False, until)
    assert encode(decode(encode(kept).encode(), 0.0)) == encode(kept)
