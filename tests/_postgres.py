"""The one way tests get a real PostgreSQL database: a schema of their own, dropped after.

``INFRABOT_TEST_DATABASE_URL`` names the server and database (``.ci/run`` creates a fresh one);
each test gets a new schema in it, reached through the URL's ``search_path``, so tests never see
each other's tables. Skips with a visible reason when PostgreSQL does not answer, except on CI
(``CI=true``), where a missing PostgreSQL fails the run instead (as :mod:`tests._redis` does).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/infrabot_test"


BACK_ENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def store_target(back_end: str, sqlite_path: Path) -> Iterator[Path | str]:
    """What a store is opened with on ``back_end``: the SQLite file ``sqlite_path``, or a fresh
    PostgreSQL schema's URL. Parametrise a fixture over :data:`BACK_ENDS` with it."""
    if back_end == "sqlite":
        yield sqlite_path
    else:
        with fresh_schema() as url:
            yield url


def server_url() -> str:
    return os.environ.get("INFRABOT_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = str(exc).strip().splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(f"no PostgreSQL at {server_url()}: CI must provide one ({message})")
        pytest.skip(f"no PostgreSQL at {server_url()}: set INFRABOT_TEST_DATABASE_URL "
                    f"({message})")


def schema_url(schema: str) -> str:
    """The test database, its tables in ``schema``; its connections are named ``schema`` too
    (``application_name``), so a test can find and kill exactly its own."""
    separator = "&" if "?" in server_url() else "?"
    return (f"{server_url()}{separator}options={quote(f'-csearch_path={schema}')}"
            f"&application_name={schema}")


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose tables live in a new, empty schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with _connect(server_url()) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema_url(schema)
        finally:
            kill_connections(schema_url(schema))
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def kill_connections(url: str) -> int:
    """Terminate every connection opened with ``url`` (its ``application_name``): the fault a
    PostgreSQL restart causes, without stopping a server others use. Returns how many."""
    name = conninfo_to_dict(url)["application_name"]
    with _connect(server_url()) as admin:
        pids = [pid for (pid, done) in admin.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()", (name,)).fetchall() if done]
        deadline = time.monotonic() + 5  # terminating is a signal: wait until they are gone
        while pids and time.monotonic() < deadline and admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                (pids,)).fetchone()[0]:
            time.sleep(0.01)
    return len(pids)


@contextlib.contextmanager
def raw(url: str) -> Iterator[Any]:
    """A plain connection as the database's owner has it, triggers off (what an attacker with
    the database has), taking ``?`` placeholders like the stores' SQL."""
    with _connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        yield _Raw(conn)


class _Raw:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        if not params:
            return self._conn.execute(sql)
        return self._conn.execute(sql.replace("?", "%s"), params)
