"""Before and after on a shared, noisy machine: two ``infrabot serve`` processes, one running
another checkout's code, up at the same time and driven in alternating bursts, so that both see
the same load. With the same-stack lower bound (:mod:`bench._stack_floor`, in its three forms)
alternating with them.

    python -m bench.exchange_ab --before /path/to/checkout [--rounds 6] [--requests 600]

Each round posts ``--requests`` exchanges from 4 clients to each server in turn (the order
alternates by round) and reads each serve process's CPU from ``/proc``; the table gives each
side's median and range over the rounds, and the ratio of the medians. The checkout's code runs
in its serve process only (``PYTHONPATH``); the driver, the forms and the floor are this
checkout's. Redis: ``--redis-url`` and the database after it (both flushed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from bench._cluster import Cluster, flush
from bench._procs import REPO
from bench._report import Table, ratio, us
from bench.exchange_http import (
    FLOOR_FORMS,
    STACK_FLOOR,
    _burst,
    _cpu_floor,
    _endpoints,
    _stack_floor,
)
from bench.run import DEFAULT_REDIS_URL

CLIENTS = 4
Post = Callable[..., Callable[[httpx.Client], bool]]


def _next_db(url: str) -> str:
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) + 1}"


def run(before: Path, redis_url: str, *, rounds: int, requests: int, tracing: bool) -> Table:
    env = {"INFRABOT_DPOP_BINDING": "false", **({} if tracing else {"INFRABOT_TRACING": "false"})}
    sides = {"before": (redis_url, {"PYTHONPATH": f"{before}{os.pathsep}{REPO}"}),
             "after": (_next_db(redis_url), {})}
    floors = ((STACK_FLOOR, "hop"), *FLOOR_FORMS)
    cpu: dict[str, list[float]] = {name: [] for name in (*sides, *(row for row, _ in floors))}
    rate: dict[str, list[float]] = {name: [] for name in cpu}
    with tempfile.TemporaryDirectory(prefix="bench-exchange-ab-") as tmp:
        clusters: dict[str, tuple[Cluster, Post]] = {}
        floor = 0.0
        try:
            for name, (url, extra) in sides.items():
                cluster = Cluster(Path(tmp) / name, url, extra_env={**env, **extra})
                flush(url)
                cluster.state_dir.mkdir(parents=True, exist_ok=True)
                cluster.serve()
                post, _, floor_ops = _endpoints(cluster)
                floor = floor or _cpu_floor(floor_ops)
                clusters[name] = (cluster, post)
            per = max(1, requests // CLIENTS)
            for index in range(rounds):
                order = list(clusters) if index % 2 == 0 else list(reversed(clusters))
                for name in order:
                    cluster, post = clusters[name]
                    assert cluster.serve_proc is not None
                    seconds, ok, failed, used = _burst(
                        cluster.serve_proc.pid,
                        [[post() for _ in range(per + 1)] for _ in range(CLIENTS)], 120)
                    if failed:
                        raise RuntimeError(f"{name}: {failed} exchanges failed")
                    cpu[name].append(1e6 * used / ok)
                    rate[name].append(ok / seconds)
                cluster, post = clusters["after"]
                for row, mode in floors:
                    floor_rate, _, floor_cpu = _stack_floor(cluster, post, per, CLIENTS,
                                                            mode=mode)
                    cpu[row].append(floor_cpu)
                    rate[row].append(floor_rate)
        finally:
            for cluster, _ in clusters.values():
                cluster.close()
    table = Table(f"Served exchange, before ({before}) and after, alternating bursts "
                  f"({'tracing on' if tracing else 'tracing off'}), {CLIENTS} clients",
                  ["server", "CPU per exchange, median (range)", "CPU / crypto floor",
                   "after / this", "exchanges/s, median (range)"])
    after = statistics.median(cpu["after"])
    for name, used_per in cpu.items():
        mid, rates = statistics.median(used_per), rate[name]
        table.add(name, f"{us(mid)} ({us(min(used_per))}–{us(max(used_per))})",
                  ratio(mid, floor), ratio(after, mid),
                  f"{statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f})")
    table.notes += [
        (f"{rounds} rounds; each round {requests} exchanges to each server in turn (order "
         "alternating), then the stack floor in its three forms (bench/_stack_floor.py: the "
         "exchange's crypto behind a thread hop, the same on the event loop, the bare HTTP "
         "edge); the server's CPU from /proc over each burst."),
        f"Crypto floor: {us(floor)} (2 raw ES256 verifies + 1 sign, CPU time, this process).",
        f"Load average 1/5/15 min at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}.",
    ]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.exchange_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--tracing", action="store_true", help="serve with tracing on")
    parser.add_argument("--redis-url", default=os.environ.get("INFRABOT_BENCH_REDIS_URL",
                                                              DEFAULT_REDIS_URL))
    args = parser.parse_args()
    print(run(args.before.resolve(), args.redis_url, rounds=args.rounds,
              requests=args.requests, tracing=args.tracing).markdown())


if __name__ == "__main__":
    main()
