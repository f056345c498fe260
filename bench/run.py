"""Run every benchmark, print each table, and write the run raw to ``bench/raw/`` (git-ignored).

    python -m bench                 # the full run (about 4 minutes on 2 cores)
    python -m bench --record        # ... and make it each benchmark's block in bench/LATEST.md
    python -m bench --quick         # about a minute
    python -m bench --only exchange,depth --label "after: cached key set"
    python -m bench --only chaos    # faults under load (issue 20), named only: minutes long

The distributed benchmarks (exchange over HTTP, enforcement, end to end, memory) need Redis; the
benchmarks use one Redis database only (``--redis-url``, default db 12) and FLUSH it; the stores
benchmark also the next one (db 13). The PostgreSQL ones (audit_postgres, stores) use fresh
schemas of ``--database-url`` and drop them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: import the package, not the folder
    _repo = str(Path(__file__).resolve().parent.parent)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    sys.path.insert(0, _repo)

from bench import (
    audit,
    audit_postgres,
    chaos,
    depth,
    dpop,
    end_to_end,
    enforcement,
    exchange,
    fanout,
    memory,
    replay,
    stores,
    tracing,
)
from bench._cluster import redis_answers
from bench._postgres import DEFAULT_DATABASE_URL, answers
from bench._report import RAW, Table, block, environment, record, write_raw

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
NAMES = ("exchange", "enforcement", "end_to_end", "depth", "audit", "memory", "replay",
         "audit_postgres", "stores", "dpop", "tracing", "fanout", "chaos")
DEFAULT = NAMES[:-1]  # chaos runs only when named: it takes minutes and starts its own servers
NEEDS_REDIS = frozenset({"exchange", "enforcement", "end_to_end", "memory", "replay", "stores",
                         "dpop", "fanout"})
NEEDS_POSTGRES = frozenset({"audit_postgres", "stores"})

FULL: dict[str, dict[str, object]] = {
    "exchange": {"iterations": 200, "rounds": 11, "http_requests": 1000,
                 "http_clients": (1, 4, 8)},
    "enforcement": {"iterations": 300, "rounds": 11},
    "end_to_end": {"sequential": 30, "burst": 60, "warmup": 5},
    "depth": {"iterations": 100, "rounds": 11},
    "audit": {"records": 2000},
    "audit_postgres": {"records": 1000},
    "stores": {"sequential": 30, "burst": 40, "warmup": 5},
    "memory": {"checkpoints": (100, 500, 1000)},
    "replay": {"rate": 500},
    "dpop": {"sequential": 20, "burst": 40, "warmup": 3, "rounds": 2, "proofs": 500},
    "tracing": {"runs": 30, "warmup": 5, "rounds": 3},
    "fanout": {"runs": 30, "warmup": 5, "latency_ms": 50},
    "chaos": {"counts": {"worker_kill": 20, "serve_restart": 5, "broker_restart": 5,
                         "registry_restart": 5}},  # issue 20's counts, per broker
}
QUICK: dict[str, dict[str, object]] = {
    "exchange": {"iterations": 100, "rounds": 5, "http_requests": 300,
                 "http_clients": (1, 4, 8)},
    "enforcement": {"iterations": 200, "rounds": 5},
    "end_to_end": {"sequential": 10, "burst": 20, "warmup": 2},
    "depth": {"iterations": 50, "rounds": 5},
    "audit": {"records": 500},
    "audit_postgres": {"records": 200},
    "stores": {"sequential": 10, "burst": 15, "warmup": 2},
    "memory": {"checkpoints": (50, 100)},
    "replay": {"rate": 50},
    "dpop": {"sequential": 5, "burst": 15, "warmup": 1, "rounds": 2, "proofs": 200},
    "tracing": {"runs": 10, "warmup": 2, "rounds": 1},
    "fanout": {"runs": 10, "warmup": 2, "latency_ms": 50},
    "chaos": {"counts": {"worker_kill": 4, "serve_restart": 2, "broker_restart": 2,
                         "registry_restart": 2}},
}


def benchmarks(redis_url: str, database_url: str) -> dict[str, Callable[..., list[Table]]]:
    return {
        "exchange": lambda **kw: exchange.run(redis_url, **kw),
        "enforcement": lambda **kw: enforcement.run(redis_url, **kw),
        "end_to_end": lambda **kw: end_to_end.run(redis_url, **kw),
        "depth": depth.run,
        "audit": audit.run,
        "memory": lambda **kw: memory.run(redis_url, **kw),
        "replay": lambda **kw: replay.run(redis_url, **kw),
        "audit_postgres": lambda **kw: audit_postgres.run(database_url, **kw),
        "stores": lambda **kw: stores.run(redis_url, database_url, **kw),
        "dpop": lambda **kw: dpop.run(redis_url, **kw),
        "tracing": tracing.run,
        "fanout": lambda **kw: fanout.run(redis_url, **kw),
        "chaos": chaos.run,
    }


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about a minute instead of ~4")
    parser.add_argument("--only", default=",".join(DEFAULT),
                        help=f"comma-separated subset of: {', '.join(NAMES)}")
    parser.add_argument("--label", default=None, help="a title for this run's section")
    parser.add_argument("--redis-url", default=os.environ.get("INFRABOT_BENCH_REDIS_URL",
                                                              DEFAULT_REDIS_URL),
                        help="the Redis database the benchmarks use and FLUSH (default db 12)")
    parser.add_argument("--database-url", default=os.environ.get("INFRABOT_BENCH_DATABASE_URL",
                                                                 DEFAULT_DATABASE_URL),
                        help="the PostgreSQL database the stores benchmarks make schemas in")
    parser.add_argument("--memory-checkpoints", default=None,
                        help="e.g. 100,500,1000,2000,3000 (workflows) for a longer memory run")
    parser.add_argument("--chaos-brokers", default=",".join(chaos.BROKERS),
                        help="the brokers the chaos benchmark runs on (default: both)")
    parser.add_argument("--raw-dir", type=Path, default=RAW,
                        help="where the run's raw JSON and Markdown go (default bench/raw/)")
    parser.add_argument("--record", action="store_true",
                        help="also replace each benchmark's block in bench/LATEST.md with "
                             "this run's (without it no tracked file is written)")
    args = parser.parse_args(argv)

    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]}; choose from {', '.join(NAMES)}")
    params = {name: dict(values) for name, values in (QUICK if args.quick else FULL).items()}
    if args.memory_checkpoints:
        params["memory"]["checkpoints"] = tuple(int(x) for x in args.memory_checkpoints.split(","))
    brokers = tuple(b.strip() for b in args.chaos_brokers.split(",") if b.strip())
    params["chaos"]["brokers"] = brokers
    if not brokers or set(brokers) - set(chaos.BROKERS):
        parser.error(f"--chaos-brokers: choose from {', '.join(chaos.BROKERS)}")
    if NEEDS_REDIS & set(chosen) and not redis_answers(args.redis_url):
        print(f"no Redis at {args.redis_url}: the distributed benchmarks need it",
              file=sys.stderr)
        return 2

    if NEEDS_POSTGRES & set(chosen) and not answers(args.database_url):
        print(f"no PostgreSQL at {args.database_url}: the stores benchmarks need it",
              file=sys.stderr)
        return 2

    env = environment(args.redis_url)
    load_start = _load()
    runners = benchmarks(args.redis_url, args.database_url)
    tables: dict[str, list[Table]] = {}
    failures = 0
    started = time.monotonic()
    for name in chosen:
        print(f"… {name}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            produced = runners[name](**params[name])
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures += 1
            detail = traceback.format_exc(limit=6)
            print(detail, file=sys.stderr)
            produced = [Table(f"{name}: FAILED", ["error"],
                              [[detail.strip().splitlines()[-1]]])]
        for table in produced:
            table.notes.append(f"({name}: {time.monotonic() - t0:.0f} s)")
            print(table.markdown(), flush=True)
        tables[name] = produced
    total = time.monotonic() - started
    env += [("load average 1/5/15 min", f"{load_start} at start, {_load()} at end"),
            ("duration", f"{total:.0f} s ({'quick' if args.quick else 'full'} run)")]
    label = args.label or ("quick run" if args.quick else "full run")
    command = "python -m bench" + (" --quick" if args.quick else "") + (
        f" --only {','.join(chosen)}" if chosen != list(DEFAULT) else "")
    raw = write_raw(label, env, tables, command, params, args.raw_dir)
    print(f"raw figures: {raw.relative_to(Path.cwd()) if raw.is_relative_to(Path.cwd()) else raw}"
          f" ({total:.0f} s)", file=sys.stderr)
    if args.record:
        recorded = {name: block(name, label, env, produced, command)
                    for name, produced in tables.items()
                    if not any(t.title.endswith(": FAILED") for t in produced)}
        record(recorded)
        print(f"recorded in bench/LATEST.md: {', '.join(recorded) or 'nothing (all failed)'}",
              file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
