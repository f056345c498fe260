"""AuditStore: append and query round trip, filters, permissions, several writers and processes."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from orchestrator.audit import GENESIS_HASH, AuditRecord, AuditStore, StoredRecord
from orchestrator.audit._chain import link_hash
from orchestrator.audit._schema import SCHEMA
from orchestrator.errors import ConfigError, Unavailable
from tests._postgres import fresh_schema

T0 = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)


def test_append_returns_the_chained_record(target: Path | str, make_record) -> None:
    with AuditStore(target, writer="w1") as store:
        first = store.append(make_record())
        second = store.append(make_record(decision="deny", reason="insufficient_scope"))
    assert (first.writer, first.seq, first.prev_hash) == ("w1", 1, GENESIS_HASH)
    assert first.hash == link_hash(GENESIS_HASH, make_record().content(), "w1", 1)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert second.id > first.id
    assert first.record == make_record()


def test_query_round_trips_every_field(target: Path | str, make_record) -> None:
    original = make_record(
        context={"trigger": "pagerduty", "environment": "staging", "run_id": "r-9"},
        chain=("agent:rollback", "agent:infrabot", "user:sam"),
        scopes=("urn:infra:deploy:rollback", "urn:infra:metrics:query"),
        status=None,
        jti=None,
        request_id=None,
        resource="service-x \u2013 prod",
    )
    with AuditStore(target) as store:
        stored = store.append(original)
        (back,) = store.query()
    assert back == stored
    assert back.record == original
    assert isinstance(back.chain, tuple) and back.context["trigger"] == "pagerduty"
    assert back.status is None and back.jti is None


@pytest.fixture
def filled(target: Path | str, make_record) -> Iterator[AuditStore]:
    rows = [
        make_record(time=T0 + timedelta(minutes=2)),
        make_record(time=T0, action="deploy:create", service="github", resource="service-x-prod"),
        make_record(
            time=T0 + timedelta(minutes=5),
            service="pagerduty",
            action="alert:raise",
            decision="deny",
            reason="insufficient_scope",
            on_behalf_of="user:alex",
            run_id="run-2",
        ),
        make_record(time=T0 + timedelta(minutes=7), performed_by="agent:argocd"),
        make_record(time=T0 + timedelta(minutes=2), resource="second-at-the-same-time"),
    ]
    with AuditStore(target) as store:
        for row in rows:
            store.append(row)
        yield store


def _resources(records: list[StoredRecord]) -> list[str]:
    return [r.resource for r in records]


@pytest.mark.parametrize("field", ["resource", "performed_by", "on_behalf_of", "request_id"])
def test_a_text_with_a_nul_character_is_refused_and_the_batch_beside_it_is_stored(
        target: Path | str, make_record, field: str) -> None:
    """PostgreSQL keeps no NUL; refused there mid-batch, it failed every caller of the batch.
    Refused before it joins one, on both back ends; its JSON fields escape it and keep it."""
    bad = make_record(**{field: "x\x00y"})
    with AuditStore(target) as store:
        barrier = threading.Barrier(9)

        def good(i: int) -> StoredRecord:
            barrier.wait()
            return store.append(make_record(resource=f"i-{i}"))

        threads = [threading.Thread(target=good, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        barrier.wait()
        with pytest.raises(ValueError, match="^an audit record's text holds a NUL character, "
                                             "which no audit store keeps$"):
            store.append(bad)
        for thread in threads:
            thread.join(30)
        kept = store.append(make_record(context={"commit": "9f2c\x00"}, chain=("a\x00",)))
        assert sorted(r.resource for r in store.query()) == \
            sorted([*(f"i-{i}" for i in range(8)), kept.resource])
        (read,) = [r for r in store.query() if r.id == kept.id]
        assert (read.context, read.chain) == ({"commit": "9f2c\x00"}, ("a\x00",))
        assert store.verify().ok


def test_query_is_ordered_by_time_then_id(filled: AuditStore) -> None:
    with filled:
        records = filled.query()
    assert _resources(records) == [
        "service-x-prod",
        "datadog-dashboard",
        "second-at-the-same-time",
        "datadog-dashboard",
        "datadog-dashboard",
    ]
    assert [r.time for r in records] == sorted(r.time for r in records)


@pytest.mark.parametrize(
    ("filters", "count"),
    [
        ({"user": "user:alex"}, 1),
        ({"user": "user:sam"}, 4),
        ({"agent": "agent:argocd"}, 1),
        ({"agent": "agent:infrabot"}, 4),
        ({"run_id": "run-2"}, 1),
        ({"service": "github"}, 1),
        ({"action": "metrics:query"}, 3),
        ({"decision": "deny"}, 1),
        ({"decision": "allow"}, 4),
        ({"since": T0 + timedelta(minutes=2)}, 4),
        ({"until": T0 + timedelta(minutes=2)}, 1),
        ({"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=6)}, 3),
        ({"limit": 2}, 2),
        ({"limit": 0}, 0),
        ({"user": "user:sam", "service": "datadog", "agent": "agent:infrabot"}, 2),
        ({"user": "user:nobody"}, 0),
    ],
)
def test_query_filters(filled: AuditStore, filters: dict[str, object], count: int) -> None:
    with filled:
        assert len(filled.query(**filters)) == count  # type: ignore[arg-type]


def test_query_filters_select_the_right_rows(filled: AuditStore) -> None:
    with filled:
        (denied,) = filled.query(decision="deny")
        first_two = filled.query(limit=2)
        aware = filled.query(since=datetime(2025, 7, 18, 18, 16, tzinfo=UTC) - timedelta(hours=2))
    assert (denied.service, denied.on_behalf_of, denied.reason) == (
        "pagerduty",
        "user:alex",
        "insufficient_scope",
    )
    assert _resources(first_two) == ["service-x-prod", "datadog-dashboard"]
    assert [r.performed_by for r in aware] == ["agent:argocd"]


def test_query_refuses_naive_times_and_negative_limits(filled: AuditStore) -> None:
    with filled:
        with pytest.raises(ValueError, match="timezone-aware"):
            filled.query(since=datetime(2025, 7, 18))
        with pytest.raises(ValueError, match="limit"):
            filled.query(limit=-1)


def test_opening_creates_a_private_directory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "audit.sqlite3"
    with AuditStore(path):
        pass
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wal_mode_and_append_only_triggers(sqlite_path: Path, make_record) -> None:
    with AuditStore(sqlite_path) as store:
        store.append(make_record())
    with sqlite3.connect(sqlite_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE records SET decision = 'deny'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM records")
        with pytest.raises(sqlite3.IntegrityError, match="one record forward"):
            conn.execute("UPDATE writers SET last_seq = 0")
    conn.close()


def test_append_only_triggers_on_postgresql(make_record) -> None:
    with fresh_schema() as url:
        with AuditStore(url) as store:
            store.append(make_record())
        with psycopg.connect(url, autocommit=True) as conn:
            for sql, message in (("UPDATE records SET decision = 'deny'", "append-only"),
                                 ("DELETE FROM records", "append-only"),
                                 ("TRUNCATE records", "append-only"),
                                 ("UPDATE writers SET last_seq = 0", "one record forward"),
                                 ("DELETE FROM writers", "never removed")):
                with pytest.raises(psycopg.errors.RaiseException, match=message):
                    conn.execute(sql)


def test_closed_store_refuses_use_and_close_is_idempotent(target: Path | str, make_record) -> None:
    store = AuditStore(target)
    store.close()
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.append(make_record())


def test_default_writer_is_unique_per_instance(target: Path | str) -> None:
    with AuditStore(target) as one, AuditStore(target) as two:
        assert one.writer != two.writer
        host, pid, suffix = one.writer.rsplit(":", 2)
        assert (host, pid, len(suffix)) == (socket.gethostname(), str(os.getpid()), 8)


def test_a_named_writer_continues_its_chain(target: Path | str, make_record) -> None:
    with AuditStore(target, writer="authserver") as store:
        first = store.append(make_record())
    with AuditStore(target, writer="authserver") as store:
        second = store.append(make_record())
        assert store.verify().ok
    assert (second.seq, second.prev_hash) == (2, first.hash)


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable audit database"):
        AuditStore(path)


def test_two_stores_on_one_file_keep_separate_chains(target: Path | str, make_record) -> None:
    with AuditStore(target, writer="a") as a, AuditStore(target, writer="b") as b:
        for i in range(5):
            a.append(make_record(resource=f"a-{i}"))
            b.append(make_record(resource=f"b-{i}"))
        report = a.verify()
        records = b.query()
    assert report.ok and (report.records, report.writers) == (10, 2)
    assert [r.seq for r in records if r.writer == "a"] == [1, 2, 3, 4, 5]
    assert [r.seq for r in records if r.writer == "b"] == [1, 2, 3, 4, 5]


def test_threads_share_one_store(target: Path | str, make_record) -> None:
    with AuditStore(target) as store:

        def work(n: int) -> None:
            for i in range(25):
                store.append(make_record(resource=f"t{n}-{i}"))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report = store.verify()
        seqs = sorted(r.seq for r in store.query())
    assert report.ok and report.records == 100
    assert seqs == list(range(1, 101))


def _append_many(target: Path | str, name: str, count: int) -> None:
    """Runs in a spawned process: its own store, its own writer, ``count`` appends."""
    with AuditStore(target) as store:
        for i in range(count):
            store.append(
                AuditRecord(
                    time=datetime.now(UTC),
                    service="datadog",
                    action="metrics:query",
                    resource=f"{name}-{i}",
                    decision="allow",
                    reason="ok",
                    performed_by=f"agent:{name}",
                    on_behalf_of="user:sam",
                    chain=(f"agent:{name}", "user:sam"),
                )
            )


def test_several_processes_append_to_one_file(target: Path | str) -> None:
    count, names = 40, ["p0", "p1", "p2"]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(target, n, count)) for n in names]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    with AuditStore(target) as store:
        report = store.verify()
        records = store.query()
    assert report.ok, report.problems
    assert (report.records, report.writers) == (count * 3, 3)
    for name in names:
        mine = [r for r in records if r.performed_by == f"agent:{name}"]
        assert sorted(r.resource for r in mine) == sorted(f"{name}-{i}" for i in range(count))
        assert sorted(r.seq for r in mine) == list(range(1, count + 1))
        assert len({r.writer for r in mine}) == 1


def test_a_locked_database_is_unavailable(
    sqlite_path: Path, make_record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.audit._store.SCHEMA", replace(SCHEMA, busy_timeout=0.1))
    with (
        AuditStore(sqlite_path) as store,
        closing(sqlite3.connect(sqlite_path, isolation_level=None)) as other,
    ):
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Unavailable, match="cannot be written"):
            store.append(make_record())
        other.execute("ROLLBACK")
        assert store.append(make_record()).seq == 1


def test_a_held_writer_lock_on_postgresql_is_unavailable(
    make_record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.audit._store.SCHEMA", replace(SCHEMA, busy_timeout=0.1))
    with fresh_schema() as url, AuditStore(url, writer="w") as store, \
            psycopg.connect(url, autocommit=True) as other:
        with other.transaction():
            other.execute("LOCK TABLE writers IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(Unavailable, match="cannot be written"):
                store.append(make_record())
        assert store.append(make_record()).seq == 1
