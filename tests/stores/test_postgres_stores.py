"""The stores on PostgreSQL where it differs from SQLite: the schema version row, a database
that cannot be reached, and the hash chain with many writer processes in one database.

(The behaviour both back ends share is tested once, parametrised: tests/audit, tests/runs.)
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import uuid
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.audit._schema import SCHEMA_VERSION as AUDIT_VERSION
from orchestrator.errors import ConfigError
from orchestrator.runs import RunStore
from orchestrator.runs._schema import SCHEMA_VERSION as RUNS_VERSION
from tests._postgres import fresh_schema, server_url

OPENERS = [(AuditStore, "audit database", "audit", AUDIT_VERSION),
           (RunStore, "run log", "runs", RUNS_VERSION)]


@pytest.fixture
def url() -> str:
    with fresh_schema() as where:
        yield where


def _version(url: str, store: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM schema_versions WHERE store = %s",
                           (store,)).fetchone()
    return int(row[0])


@pytest.mark.parametrize(("opener", "what", "store", "version"), OPENERS)
def test_a_newer_schema_is_refused_and_left_as_it_is(url: str, opener: type, what: str,
                                                     store: str, version: int) -> None:
    opener(url).close()
    opener(url).close()  # reopening keeps it
    assert _version(url, store) == version
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE store = %s", (store,))
    with pytest.raises(ConfigError) as caught:
        opener(url)
    assert str(caught.value) == f"{what} schema version 99 is newer than this code ({version})"
    assert _version(url, store) == 99


def test_both_stores_share_one_database(url: str) -> None:
    AuditStore(url).close()
    RunStore(url).close()
    assert (_version(url, "audit"), _version(url, "runs")) == (AUDIT_VERSION, RUNS_VERSION)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("opener", "what", "store", "version"), OPENERS)
def test_an_unreachable_database_is_one_line_without_the_password(
        opener: type, what: str, store: str, version: int) -> None:
    port = _free_port()
    with pytest.raises(ConfigError) as caught:
        opener(f"postgresql://postgres:s3cret@127.0.0.1:{port}/ib_nowhere")
    message = str(caught.value)
    # a URL given as such names no setting (tests/stores/test_database_setting_named.py)
    assert message.startswith(f"cannot reach the database at postgresql://postgres@127.0.0.1:"
                              f"{port}/ib_nowhere: ")
    assert "\n" not in message and "s3cret" not in message


def test_a_missing_database_is_one_line(url: str) -> None:
    parts = urlsplit(server_url())
    missing = urlunsplit((parts.scheme, parts.netloc, f"{parts.path}_missing_{uuid.uuid4().hex}",
                          "", ""))
    with pytest.raises(ConfigError) as caught:
        AuditStore(missing)
    assert "does not exist" in str(caught.value) and "\n" not in str(caught.value)


def _append(target: str, writer: str | None, name: str, count: int) -> None:
    """A writer process (a host, as far as the database can tell): ``count`` appends."""
    with AuditStore(target, writer=writer) as store:
        for i in range(count):
            store.append(AuditRecord(
                time=datetime.now(UTC), service="aws", action="instances:describe",
                resource=f"{name}-{i}", decision="allow", reason="ok",
                performed_by="agent:argocd", on_behalf_of="user:sam",
                chain=("agent:argocd", "agent:infrabot", "user:sam")))


def test_many_writer_processes_keep_every_chain_intact(url: str) -> None:
    """Six processes at once: four with their own writers, and two that share one writer name
    (one component on two hosts, configured alike): its chain must still be one line."""
    count = 60
    plan = [(None, "own-0"), (None, "own-1"), (None, "own-2"), (None, "own-3"),
            ("shared", "shared-a"), ("shared", "shared-b")]
    AuditStore(url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(url, writer, name, count))
             for writer, name in plan]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=180)
    assert [proc.exitcode for proc in procs] == [0] * len(plan)
    with AuditStore(url) as store:
        report = store.verify()
        records = store.query()
    assert report.ok, report.problems
    assert (report.records, report.writers) == (count * len(plan), 5)
    resources = Counter(r.resource for r in records)
    assert set(resources.values()) == {1} and len(resources) == count * len(plan)
    shared = [r for r in records if r.writer == "shared"]
    assert sorted(r.seq for r in shared) == list(range(1, 2 * count + 1))
    by_id = sorted(shared, key=lambda r: r.id)
    assert [r.seq for r in by_id] == list(range(1, 2 * count + 1))  # stored in chain order
    assert all(b.prev_hash == a.hash for a, b in pairwise(by_id))


def test_a_process_with_many_files_open_still_writes_and_reads(url: str) -> None:
    """A busy server's connections get descriptors past 1023, which ``select.select`` refuses:
    the idle-connection check read that as a server that ended it, and every transaction was
    unavailable."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        _append(url, None, "i", 2)
        with AuditStore(url) as store:
            assert [r.resource for r in store.query()] == ["i-0", "i-1"]
            assert store.verify().ok
    finally:
        for fd in held:
            os.close(fd)
