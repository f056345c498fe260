"""Benchmark 8: the post-deploy workflow end to end with its stores on PostgreSQL beside the
same workflow with SQLite stores, in the same run.

Two clusters as benchmark 3 builds them (one ``infrabot serve``, two ``infrabot worker -c 1``,
Redis broker and registry), alike but for ``INFRABOT_DATABASE_URL``: one keeps the audit trail
and the run log in SQLite files in its state directory (the default), the other in a fresh
schema of one PostgreSQL database. Both run at once, idle while the other works: delegated runs
are started one at a time, alternating between the two, so a busy patch of a shared machine
falls on both. Then a burst on each, one after the other.

A third cluster runs PostgreSQL with ``synchronous_commit=off``: the durability SQLite's WAL
with ``synchronous=NORMAL`` has (a commit survives the writing process, not the machine, and on
PostgreSQL not a server crash either), to show what the commit flush costs. The product does not
set it. The second and third clusters use the Redis databases after the benchmarks' one (db 13
and 14 by default); all are flushed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench._cluster import Cluster, next_db
from bench._postgres import fresh_schema
from bench._report import Table, ms
from bench._timing import percentile

LATENCY_GOAL = 1.10


def run(redis_url: str, database_url: str, *, sequential: int = 30, burst: int = 40,
        warmup: int = 5, workers: int = 2, work: Path | None = None) -> list[Table]:
    with tempfile.TemporaryDirectory(prefix="bench-stores-", dir=work) as tmp, \
            fresh_schema(database_url) as pg_url, \
            fresh_schema(database_url, "synchronous_commit=off") as async_url, \
            Cluster(Path(tmp) / "sqlite", redis_url) as sqlite, \
            Cluster(Path(tmp) / "postgresql", next_db(redis_url), pg_url) as postgres, \
            Cluster(Path(tmp) / "async", next_db(next_db(redis_url)), async_url) as relaxed:
        clusters = {"SQLite files": sqlite, "PostgreSQL": postgres,
                    "PostgreSQL, synchronous_commit=off": relaxed}
        for cluster in clusters.values():
            cluster.start(workers)
        for i in range(warmup):
            for cluster in clusters.values():
                cluster.wait_runs([cluster.start_run("delegated", i)], timeout=60)
        latencies: dict[str, list[float]] = {name: [] for name in clusters}
        failed = dict.fromkeys(clusters, 0)
        for i in range(sequential):
            for name, cluster in clusters.items():
                (done,) = cluster.wait_runs([cluster.start_run("delegated", i)], timeout=60)
                latencies[name].append(done.latency_ms)
                failed[name] += done.status != "succeeded"
        throughput = {}
        for name, cluster in clusters.items():
            ids = [cluster.start_run("delegated", i) for i in range(burst)]
            runs = cluster.wait_runs(ids, timeout=60 + burst)
            failed[name] += sum(r.status != "succeeded" for r in runs)
            throughput[name] = burst / (max(r.finished for r in runs)
                                        - min(r.created for r in runs))
    return [_table(latencies, throughput, failed, sequential, burst, workers)]


def _table(latencies: dict[str, list[float]], throughput: dict[str, float],
           failed: dict[str, int], sequential: int, burst: int, workers: int) -> Table:
    table = Table("Stores: delegated post-deploy workflow, SQLite vs PostgreSQL stores, "
                  f"{workers} worker processes",
                  ["stores", "p50 latency", "p95 latency", "throughput", "failed runs",
                   "p50 vs SQLite", "throughput vs SQLite"])
    base_p50 = percentile(latencies["SQLite files"], 50)
    base_rate = throughput["SQLite files"]
    for name, values in latencies.items():
        p50 = percentile(values, 50)
        table.add(name, ms(p50), ms(percentile(values, 95)), f"{throughput[name]:.1f} runs/s",
                  failed[name], f"{p50 / base_p50:.2f}x", f"{throughput[name] / base_rate:.2f}x")
    pg_ratio = percentile(latencies["PostgreSQL"], 50) / base_p50
    table.notes += [
        f"{sequential} runs one at a time on each, alternating; then a burst of {burst} on each.",
        ("Latency: the run log's created_at -> finished_at. Each run writes ~25 audit records "
        "(root grant, 9 exchanges, 7 calls, plus the checks before each mutating call) and "
        "~30 run-log events and hop marks."),
        (f"Goal: PostgreSQL p50 within {LATENCY_GOAL:.2f}x of SQLite: "
        f"{'met' if pg_ratio <= LATENCY_GOAL else 'NOT met'} ({pg_ratio:.2f}x)."),
    ]
    return table
