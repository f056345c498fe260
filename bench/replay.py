"""Benchmark 7: what holding each client assertion's ``jti`` until its ``exp`` costs Redis.

Issue 19 raised the assertion lifetime bound from 300 s to 3600 s, and the replay registry holds
each one-time key until the assertion expires, so at a steady rate it holds ``rate x lifetime``
keys. This fills the benchmarks' Redis database with exactly that, sent as the registry sends
it (``RedisRevocationStore._claim_command``: the claim script with ``issued_at``, keys named
as :class:`~orchestrator.authserver.ClientAuthenticator` names them, ``jti`` as our agents write
it, TTL = lifetime + leeway) and reads, once the keys are in: their count, ``used_memory`` grown
and per key, whether a sample's TTL is the lifetime, and the time of one more claim (a real
:meth:`claim_once` round trip) on the full database. Baseline in the same run: the old 300 s
bound at the same rate. The rate defaults to the HTTP exchange benchmark's, with 8 clients (about
500 exchanges/s on 2 cores in RESULTS.md; each exchange spends one client assertion), the
heaviest load any benchmark puts on the registry.
"""

from __future__ import annotations

import statistics
import time

import redis

from bench._report import Table, mib, us
from orchestrator.identity import new_jti
from orchestrator.registry import RedisRevocationStore

RATE = 500  # assertions/s: benchmark 1's exchange-over-HTTP rate with 8 clients
LIFETIMES = (300, 3600)  # the old bound (baseline) and the new default
LEEWAY = 5
PIPELINE = 2000
CLIENT = "agent:infrabot"


def _fill(store: RedisRevocationStore, client: redis.Redis, count: int, ttl: int) -> float:
    """Claim ``count`` fresh keys for ``ttl`` seconds, pipelined; seconds it took."""
    started = time.perf_counter()
    now = int(time.time())
    left = count
    while left:
        batch = min(PIPELINE, left)
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.execute_command(*store._claim_command(f"assertion:{CLIENT}:{new_jti()}", ttl,
                                                       now))
        answers = pipe.execute()
        if any(a != 1 for a in answers):
            raise RuntimeError("a fresh one-time key was refused while filling the registry")
        left -= batch
    return time.perf_counter() - started


def _claim_latency(store: RedisRevocationStore, ttl: int, samples: int) -> float:
    """Median µs of one real claim round trip (``claim_once``) on the database as it is."""
    times = []
    for _ in range(samples):
        key = f"assertion:{CLIENT}:{new_jti()}"
        t0 = time.perf_counter()
        if not store.claim_once(key, ttl=ttl, issued_at=int(time.time())):
            raise RuntimeError("a fresh one-time key was refused")
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def _used_memory(client: redis.Redis) -> int:
    info = client.info("memory")
    return int(info["used_memory"])


def run(redis_url: str, *, rate: int = RATE, lifetimes: tuple[int, ...] = LIFETIMES,
        samples: int = 200) -> list[Table]:
    client = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=2)
    store = RedisRevocationStore(client)  # type: ignore[arg-type]
    table = Table(f"Replay registry: one-time keys held until exp, at {rate:,} assertions/s",
                  ["assertion lifetime", "keys in the db", "Redis memory grown", "per key",
                   "sample TTL", "fill (pipelined)", "one more claim (p50)"])
    grown: dict[int, int] = {}
    try:
        for lifetime in lifetimes:
            client.flushdb()
            store.ping()
            empty_claim = _claim_latency(store, lifetime + LEEWAY, samples)
            client.flushdb()
            before = _used_memory(client)
            count = rate * lifetime
            seconds = _fill(store, client, count, lifetime + LEEWAY)
            keys = int(client.dbsize())
            grown[lifetime] = _used_memory(client) - before
            sample = next(client.scan_iter(match="infrabot:once:*", count=100))
            full_claim = _claim_latency(store, lifetime + LEEWAY, samples)
            table.add(f"{lifetime:,} s", f"{keys:,}", mib(grown[lifetime]),
                      f"{grown[lifetime] / max(keys, 1):.0f} B", f"{client.ttl(sample):,} s",
                      f"{seconds:.1f} s ({count / seconds:,.0f}/s)",
                      f"{us(full_claim)} (empty db: {us(empty_claim)})")
    finally:
        client.flushdb()
        store.close()
    first, last = lifetimes[0], lifetimes[-1]
    if first in grown and last in grown and grown[first]:
        table.notes.append(f"Holding for {last:,} s costs {grown[last] / grown[first]:.1f}x the "
                           f"memory of {first:,} s (baseline, same run).")
    table.notes.append(
        "Keys are `infrabot:once:assertion:<client>:<jti>` written by the registry's own claim "
        "command (the script that also checks when the memory began); each expires at the "
        "assertion's exp + leeway, so the count is the steady state at this rate.")
    table.notes.append(
        "The registry's Redis must not evict keys (maxmemory-policy noeviction, or no "
        "maxmemory): an evicted one-time key is a replay window.")
    return [table]
