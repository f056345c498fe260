"""The stores benchmarks run, with tiny counts, and produce their tables (no figure asserted).

They need the benchmarks' PostgreSQL (a fresh schema of the test database here, as
tests/_postgres.py gives: skipped when none answers, a failure on CI) and, for the end-to-end
one, the benchmarks' Redis databases 12 and 13 (flushed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import audit_postgres, stores
from bench.run import DEFAULT_REDIS_URL
from tests._postgres import fresh_schema, server_url
from tests._redis import flushed_redis


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_schema():  # skips (or fails on CI) when PostgreSQL does not answer
        yield server_url()


def test_audit_postgres(database_url: str) -> None:
    table, threads = audit_postgres.run(database_url, records=5, writers=(1, 2), threads=(1, 4))
    assert len(table.rows) == 2
    assert all(row[-1].startswith("intact") for row in table.rows)
    assert [row[0] for row in threads.rows] == ["1", "4"]


def test_stores_end_to_end(database_url: str, tmp_path: Path) -> None:
    url = os.environ.get("INFRABOT_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    second = stores.next_db(url)
    with flushed_redis(12, url) as first, flushed_redis(13, second), \
            flushed_redis(14, stores.next_db(second)):
        (table,) = stores.run(first, database_url, sequential=1, burst=1, warmup=0,
                              work=tmp_path)
    assert [row[0] for row in table.rows] == ["SQLite files", "PostgreSQL",
                                              "PostgreSQL, synchronous_commit=off"]
    assert [row[4] for row in table.rows] == ["0", "0", "0"]  # no failed runs
