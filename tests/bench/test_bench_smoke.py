"""Every benchmark runs, with tiny iteration counts, and produces its table.

Benchmarks are not timed tests: nothing here asserts a figure, only that each benchmark still
works against the code it measures (a renamed API or a broken run shows up here, not in the next
benchmark run). The distributed ones start real ``infrabot serve`` and worker processes over the
benchmarks' Redis database (``INFRABOT_BENCH_REDIS_URL``, default db 12, flushed): skipped when
Redis does not answer, except on CI (``CI=true``), where a missing Redis fails the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from bench import (
    audit,
    depth,
    dpop,
    end_to_end,
    enforcement,
    exchange,
    fanout,
    memory,
    replay,
    tracing,
)
from bench._cluster import Cluster, next_db
from bench._report import Table, block, record, section
from bench._stack_floor import crypto_app
from bench.exchange_http import FLOOR_FORMS, STACK_FLOOR
from bench.run import DEFAULT_REDIS_URL, NAMES, main
from orchestrator.audit import AuditStore
from orchestrator.authserver import AuthorizationService
from tests._redis import flushed_redis

BENCH_REDIS_DB = 12


@pytest.fixture
def bench_redis_url() -> Iterator[str]:
    """The benchmarks' database, flushed before and after (tests/_redis.py)."""
    url = os.environ.get("INFRABOT_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if not url.rstrip("/").endswith(f"/{BENCH_REDIS_DB}"):
        pytest.fail(f"INFRABOT_BENCH_REDIS_URL must name db {BENCH_REDIS_DB} (it is flushed)")
    with flushed_redis(BENCH_REDIS_DB, url) as flushed:
        yield flushed


def column(table: Table, name: str) -> list[str]:
    index = table.columns.index(name)
    return [row[index] for row in table.rows]


def check(tables: list[Table], rows: int) -> Table:
    assert len(tables) >= 1
    for table in tables:
        assert table.rows, table.title
        assert all(len(row) == len(table.columns) for row in table.rows)
        markdown = table.markdown()
        assert markdown.startswith(f"### {table.title}") and "| " in markdown
    assert len(tables[0].rows) == rows
    return tables[0]


def test_depth(tmp_path: Path) -> None:
    table = check(depth.run(iterations=2, rounds=1, depth=3), rows=4)
    sizes = [int(size) for size in column(table, "token bytes")[:3]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3  # each level adds an actor


def test_audit(tmp_path: Path) -> None:
    table = check(audit.run(records=5, writers=(1, 2), work=tmp_path), rows=2)
    assert all(v.startswith("intact") for v in column(table, "verify of the file"))


def test_exchange(bench_redis_url: str, tmp_path: Path) -> None:
    tables = exchange.run(bench_redis_url, iterations=2, rounds=1, http_requests=4,
                          http_clients=(1, 2), work=tmp_path)
    in_process = check(tables, rows=8)
    assert column(in_process, "operation")[-1] == "floor + raw codec (no check at all)"
    http = tables[1]
    assert column(http, "server") == ["as served", "as served", STACK_FLOOR,
                                      *(name for name, _ in FLOOR_FORMS), "tracing off"]
    assert column(http, "clients") == ["1", "2", "2", "2", "2", "1"]
    assert column(http, "failed") == ["0"] * 6
    assert all(cell.endswith("x") for cell in column(http, "CPU / floor"))
    codec = check(tables[2:], rows=3)
    assert column(codec, "operation")[-1].startswith("over HTTP, 1 client")


def test_enforcement(bench_redis_url: str, tmp_path: Path) -> None:
    check(enforcement.run(bench_redis_url, iterations=2, rounds=1, work=tmp_path), rows=2)


def test_replay(bench_redis_url: str) -> None:
    table = check(replay.run(bench_redis_url, rate=2, lifetimes=(30, 60), samples=2), rows=2)
    assert column(table, "keys in the db") == ["61", "121"]  # rate x lifetime, + began
    assert column(table, "sample TTL")[1] in ("64 s", "65 s")  # the lifetime + leeway


def test_end_to_end(bench_redis_url: str, tmp_path: Path) -> None:
    table = check(end_to_end.run(bench_redis_url, sequential=2, burst=2, warmup=0,
                                 work=tmp_path), rows=5)
    # post-deploy today: counted in a delegated run's audit trail, not assumed
    assert column(table, "form")[:2] == ["**delegated** (12 exchanges), hops overlapped",
                                         "delegated, overlap off"]
    assert column(table, "failed runs") == ["0", "0", "-", "0", "0"]
    # the lower bound: the static p50 plus what 12 exchanges and 9 checks cannot avoid
    assert any("12 exchanges and 9 checked calls" in note for note in table.notes)
    assert column(table, "form")[2].startswith("lower bound for delegated, overlap off")
    bound, static = (float(v.removesuffix(" ms").replace(",", ""))
                     for v in column(table, "p50 latency")[2:4])
    assert bound > static


def test_the_lower_bound_needs_a_delegated_run_to_count(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, "redis://127.0.0.1:1/12")  # never started: nothing ran
    cluster.state_dir.mkdir(parents=True)
    AuditStore(cluster.settings.audit_target).close()  # an audit trail with no record in it
    with pytest.raises(RuntimeError, match="^no delegated run in the audit trail to count$"):
        end_to_end._per_run(cluster)


def test_the_stack_floor_refuses_a_mode_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="^INFRABOT_BENCH_FLOOR_MODE must be one of hop, loop, "
                                         "edge$"):
        crypto_app(cast(AuthorizationService, None), "threads")  # refused before it is used


def test_fanout(bench_redis_url: str, tmp_path: Path) -> None:
    """Both shapes at 0 ms and at the latency asked for, on a second cluster (the next db)."""
    with flushed_redis(BENCH_REDIS_DB + 1, next_db(bench_redis_url)):
        tables = fanout.run(bench_redis_url, runs=2, warmup=0, latency_ms=100, work=tmp_path)
    table = check(tables, rows=4)
    assert column(table, "service latency") == ["0 ms", "0 ms", "100 ms", "100 ms"]
    assert column(table, "failed runs") == ["0"] * 4
    assert column(table, "p50 vs linear")[1::2] == ["1.00x", "1.00x"]
    verdicts = column(table, "fan-out faster (issue 18)")
    assert verdicts[1::2] == ["", ""]
    assert set(verdicts[::2]) <= {"**met**", "not shown (within 5%)", "NOT met"}
    assert table.title.endswith("at 100 ms a call")
    parts = tables[1]
    assert column(parts, "service latency") == ["0 ms", "100 ms"]
    calls = [float(cell.split(" / ")[1].removesuffix(" ms"))  # the linear chain's, one at a time
             for cell in column(parts, "a branch's call")]
    assert calls[0] < 100 <= calls[1]  # the services waited as set, and only where set
    for cell in column(parts, "1st / 2nd branch starts after the fork"):
        first, second = (float(part.removesuffix(" ms")) for part in cell.split(" / "))
        assert 0 < first <= second  # each branch's first exchange, after the fork's last


def test_dpop(bench_redis_url: str, tmp_path: Path) -> None:
    tables = dpop.run(bench_redis_url, sequential=1, burst=2, warmup=0, rounds=1, proofs=5,
                      work=tmp_path)
    table = check(tables, rows=3)
    assert column(table, "form") == ["**dpop+chain**", "dpop", "unbound"]
    assert column(table, "failed runs") == ["0", "0", "0"]  # every form ran the chain through
    assert column(table, "CPU vs unbound")[2] == "1.00x"
    assert [row[0] for row in tables[1].rows] == ["make (agent)", "verify (server, service)"]


def test_tracing() -> None:
    tables = tracing.run(runs=1, warmup=0, rounds=1)
    table = check(tables, rows=5)
    assert column(table, "tracing") == ["off", "kept", "otlp", "recorded, not exported (floor)",
                                        "propagation only (floor)"]
    assert column(table, "vs off")[0] == "1.00x"
    assert table.notes[0] != "OTLP requests received: 0"  # the otlp child did export
    assert column(tables[1], "part")[0] == "httpx request, instrumented"


def test_memory(bench_redis_url: str, tmp_path: Path) -> None:
    table = check(memory.run(bench_redis_url, checkpoints=(2, 4), work=tmp_path), rows=6)
    assert column(table, "process")[-1] == "`infrabot demo` (one process)"
    assert "(exit" not in column(table, "< 150 MiB")[-1]  # the demo itself went as designed


def test_runner_writes_the_run_raw_and_no_tracked_file_unless_asked(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tracked = [Path(__file__).resolve().parents[2] / "bench" / name
               for name in ("RESULTS.md", "LATEST.md")]
    before = [path.read_text() for path in tracked]
    assert main(["--quick", "--only", "depth", "--raw-dir", str(tmp_path)]) == 0
    assert "### Depth" in capsys.readouterr().out
    assert [path.read_text() for path in tracked] == before
    [raw] = tmp_path.glob("bench-*Z-depth.json")
    data = json.loads(raw.read_text())
    assert data["tables"]["depth"][0]["title"].startswith("Depth")
    assert data["environment"]["commit"] and data["params"]["depth"]["iterations"] == 50
    assert raw.with_suffix(".md").read_text().count("### Depth") == 1


def test_record_replaces_only_the_named_blocks(tmp_path: Path) -> None:
    results = tmp_path / "LATEST.md"
    results.write_text("# curated\n\n<!-- bench:depth -->\nold depth\n<!-- /bench:depth -->\n"
                       "\n<!-- bench:audit -->\nold audit\n<!-- /bench:audit -->\n")
    env = [("date", "2026-01-01 00:00:00 UTC"), ("code measured", "/x"), ("python", "3.11")]
    table = Table("Depth: t", ["a"], [["1"]])
    record({"depth": block("depth", "label", env, [table], "cmd"),
            "chaos": block("chaos", "label", env, [table], "cmd")}, results)
    text = results.read_text()
    assert text.startswith("# curated\n") and "old depth" not in text and "old audit" in text
    assert text.count("<!-- bench:depth -->") == 1 and text.count("<!-- /bench:chaos -->") == 1
    assert "#### Depth: t" in text and "- python: 3.11" in text and "/x" not in text


def test_the_runs_are_recorded_apart_from_the_curated_table() -> None:
    """``--record`` writes LATEST.md; RESULTS.md stays the short table chosen by hand."""
    bench_dir = Path(__file__).resolve().parents[2] / "bench"
    assert record.__defaults__ == (bench_dir / "LATEST.md",)
    assert "<!-- bench:" not in (bench_dir / "RESULTS.md").read_text()
    assert "<!-- bench:end_to_end -->" in (bench_dir / "LATEST.md").read_text()


def test_runner_refuses_an_unknown_benchmark(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "nonsense", "--raw-dir", str(tmp_path)])
    assert "exchange" in NAMES


def test_section_names_the_environment() -> None:
    table = Table("t", ["a"], [["1"]])
    text = section("label", [("date", "2026-01-01"), ("python", "3.11")], [table], "cmd")
    assert text.startswith("## 2026-01-01: label") and "- python: 3.11" in text
