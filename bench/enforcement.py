"""Benchmark 2: one request's validation at a service.

:meth:`AccessChecker.verify_and_admit`, as every service request runs it (signature against the
published keys, every claim rule, the revocation check on the real Redis, sent before the
signature check and read after it, and the route's authorization), against the floor measured in
the same run: one raw ES256 signature verification of the same token with ``cryptography`` plus
one Redis round trip (a raw ``GET`` with ``redis-py``). The verify and admit columns time the two
halves one after the other, without the overlap.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import redis

from bench._cluster import flush
from bench._inproc import RawJWS, cleanup_chain, stack
from bench._report import Table, ratio, us
from bench._timing import compare
from mock_services._access import AccessChecker
from orchestrator.registry import RedisRevocationStore

GOAL = 1.5
CASES = (("aws", "urn:infra:infrastructure:clean", "cleanup at AWS, 3 actors"),
         ("datadog", "urn:infra:monitoring:read", "infrabot at Datadog, 1 actor"))


def run(redis_url: str, *, iterations: int = 2000, rounds: int = 5,
        work: Path | None = None) -> list[Table]:
    table = Table("Enforcement at a service: AccessChecker.verify_and_admit vs raw verify + "
                  "one Redis GET",
                  ["token", "verify_and_admit", "verify", "admit (incl. Redis)",
                   "raw verify", "raw GET", "floor", "ratio"])
    flush(redis_url)
    raw_redis = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    raw_redis.set("bench:probe", "1")
    with tempfile.TemporaryDirectory(prefix="bench-enforce-", dir=work) as tmp, \
            stack(Path(tmp), redis_url=redis_url) as st:
        tokens = cleanup_chain(st)
        # The in-process chain's hand-offs carry no delegation records: the check measured is
        # the one its baseline measured (bench/dpop.py measures confirmed chains).
        directory = st.directory.model_copy(update={"services": {
            name: entry.model_copy(update={"delegation": "optional"})
            for name, entry in st.directory.services.items()}})
        revocation = RedisRevocationStore.from_url(redis_url)
        n, r = iterations, rounds
        ratios: list[float] = []
        try:
            for service, scope, label in CASES:
                checker = AccessChecker(audience=st.settings.service_url(service),
                                        settings=st.settings, keys=st.keyring.jwks(),
                                        revocation=revocation, directory=directory,
                                        clock=time.time, service=service)
                token = tokens[service]
                claims = checker.verify(token)
                checker.admit(claims, scope)
                raw = RawJWS(token, st.keyring.current.public.key)  # type: ignore[arg-type]
                m = {name: sample.median_us for name, sample in compare({
                    "raw verify": raw.verify,
                    "raw get": lambda _: raw_redis.get("bench:probe"),
                    # run now, inside this iteration: the loop variables are the right ones
                    "verify": lambda _: checker.verify(token),  # noqa: B023
                    "admit": lambda _: checker.admit(claims, scope),  # noqa: B023
                    "full": lambda _: checker.verify_and_admit(token, scope),  # noqa: B023
                }, n, r, warmup=20).items()}
                floor = m["raw verify"] + m["raw get"]
                ratios.append(m["full"] / floor)
                table.add(f"{label} ({raw.size} B)", f"**{us(m['full'])}**", us(m["verify"]),
                          us(m["admit"]), us(m["raw verify"]), us(m["raw get"]), us(floor),
                          f"**{ratio(m['full'], floor)}**")
        finally:
            revocation.close()
            raw_redis.close()
    table.notes += [
        (f"Median of {r} interleaved rounds x {n} requests. The registry is the real Redis "
        "(the benchmark db); `revocation_stale_seconds` is 0, so every request asks it "
        "(epoch, token, ancestors, run and user in one round trip). Keys: the published key set, "
        "already fetched."),
        ("verify_and_admit sends the registry query (naming what the token's payload says) before "
        "the signature check and reads the answer after it, so the round trip overlaps the check; "
        "the answer is applied only to verified claims that name the same things. The verify and "
        "admit columns are the two halves timed one after the other."),
        (f"Goal: verify_and_admit within {GOAL}x of the floor: "
        f"{'met' if ratios and max(ratios) <= GOAL else 'not met'}."),
    ]
    return [table]
