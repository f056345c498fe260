"""The benchmarks' PostgreSQL: a fresh schema of the benchmarks' database per benchmark,
dropped after it (``--database-url`` or ``INFRABOT_BENCH_DATABASE_URL``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/infrabot_bench"


def answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@contextmanager
def fresh_schema(url: str, *settings: str) -> Iterator[str]:
    """The database URL with its tables in a new schema (``search_path``), dropped after;
    ``settings`` (``name=value``) are set on every connection made with it."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in url else "?"
    options = " ".join(f"-c{item}" for item in (f"search_path={schema}", *settings))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{url}{separator}options={quote(options)}"
        finally:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "datname = current_database() AND pid <> pg_backend_pid() AND "
                          "query ILIKE %s", (f"%{schema}%",))
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
