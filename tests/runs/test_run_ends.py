"""The queue of ended runs whose tokens are still to be revoked (``orchestrator.runs._ends``):
the transaction that ends a run queues it, once, unless its caller revokes the run itself; the
queue is read in the order runs ended and forgets only what it is told to. On SQLite and
PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from orchestrator.runs import HopJournal, RunStore
from orchestrator.runs import _store as run_store
from tests._events import detail

from .conftest import T0, Clock, Origin

DAY = 24 * 3600
KEYS = ["sha256:ab", "deployment:7"]


def _ids(store: RunStore) -> list[str]:
    return [ended.run_id for ended in store.ended()]


def test_a_run_is_queued_once_when_it_ends_in_the_order_runs_ended(
        store: RunStore, origin: Origin, clock: Clock) -> None:
    for run_id in ("run-b", "run-a", "run-c"):
        store.create(run_id, workflow="post-deploy", event=origin)
    assert store.ended() == []  # nothing ended yet
    assert store.finish("run-b", "succeeded", "ok")
    assert store.finish("run-a", "denied", "scope_not_allowed")
    assert not store.finish("run-b", "failed", "late")  # not ended again: not queued again
    assert _ids(store) == ["run-b", "run-a"]  # as they ended, not by id
    [first, second] = store.ended()
    assert T0 < first.ended_at < second.ended_at < clock.now
    assert first.cause == second.cause == "ended"
    assert store.get("run-b").finished_at == first.ended_at
    assert _ids(store) == ["run-b", "run-a"]  # reading takes nothing off
    store.forget_ended(["run-b"])
    assert _ids(store) == ["run-a"]
    store.forget_ended([])
    assert store.finish("run-c", "failed", "broken")
    assert _ids(store) == ["run-a", "run-c"]
    assert [e.run_id for e in store.ended(limit=1)] == ["run-a"]


def test_a_run_is_queued_with_why_and_only_with_a_cause_of_ours(
        db: Path | str, store: RunStore, origin: Origin) -> None:
    store.create("run-x", workflow="post-deploy", event=origin)
    with pytest.raises(ValueError, match="'whatever' is not a cause of revocation"):
        store.finish("run-x", "failed", "broken", cause="whatever")
    assert store.get("run-x").status == "pending"  # nothing written
    assert store.finish("run-x", "failed", "deadline_exceeded", cause="deadline_exceeded")
    assert [(e.run_id, e.cause) for e in store.ended()] == [("run-x", "deadline_exceeded")]
    store.forget_ended(["run-x"])
    with RunStore(db) as other, other._write() as tx:  # a row written by hand
        tx.execute("INSERT INTO run_ends (run_id, ended_at, cause) VALUES (?, ?, ?)",
                   ("run-x", "2026-12-08T00:00:00.000000Z", "owned.by.someone"))
    assert [(e.run_id, e.cause) for e in store.ended()] == [("run-x", "ended")]


def test_a_forgotten_run_ended_again_is_not_queued_again(store: RunStore, origin: Origin) -> None:
    store.create("run-x", workflow="post-deploy", event=origin)
    assert store.finish("run-x", "succeeded", "ok")
    store.forget_ended(["run-x"])
    assert not store.finish("run-x", "failed", "late")
    assert store.ended() == []


def test_the_queue_is_the_run_logs_every_process_sees_it(
        db: Path | str, store: RunStore, origin: Origin) -> None:
    store.create("run-x", workflow="post-deploy", event=origin)
    with RunStore(db) as worker:  # the host that ends it
        assert worker.finish("run-x", "succeeded", "ok")
    assert _ids(store) == ["run-x"]


def test_a_pending_run_a_redelivery_took_over_is_queued(store: RunStore, origin: Origin) -> None:
    """Its start may have got a root token before it stopped: the run is revoked like any
    other that ended."""
    for key in KEYS:
        assert store.claim_delivery(key, ttl=DAY, run_id="run-x")
    store.create("run-x", workflow="post-deploy", event=origin)
    assert store.take_over_delivery(KEYS, "run-x", "run-y") == "run-y"
    assert _ids(store) == ["run-x"]


def test_a_running_run_a_redelivery_superseded_is_queued_as_superseded(
        store: RunStore, origin: Origin) -> None:
    """Its revocation's record says why (``<run>.superseded``)."""
    for key in KEYS:
        assert store.claim_delivery(key, ttl=DAY, run_id="run-x")
    store.create("run-x", workflow="post-deploy", event=origin)
    HopJournal(store).send("run-x", "agent:infrabot")
    assert store.mark_running("run-x")
    assert store.take_over_started(KEYS, "run-x", "run-y") == "run-y"
    assert store.get("run-x").status == "failed"
    assert [(e.run_id, e.cause) for e in store.ended()] == [("run-x", "superseded")]
    assert store.queued_end("run-x") == store.ended()[0]


def test_wait_returns_a_run_once_its_end_is_no_longer_queued(
        store: RunStore, origin: Origin, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create("run-x", workflow="post-deploy", event=origin)
    assert store.finish("run-x", "succeeded", "ok")
    assert not store.settled("run-x")
    # nobody revokes it: returned as it is once the timeout has passed
    started = time.monotonic()
    assert store.wait("run-x", timeout=0.3).status == "succeeded"
    assert time.monotonic() - started >= 0.3
    # or once it has been given its grace, well within a long timeout
    monkeypatch.setattr(run_store, "SETTLE_SECONDS", 0.3)
    started = time.monotonic()
    assert store.wait("run-x", timeout=60).status == "succeeded"
    assert 0.3 <= time.monotonic() - started < 30
    # settled by another thread (the serving process's sweep): returned then, not at the grace
    monkeypatch.setattr(run_store, "SETTLE_SECONDS", 20.0)
    timer = threading.Timer(0.2, store.forget_ended, args=(["run-x"],))
    timer.start()
    started = time.monotonic()
    assert store.wait("run-x", timeout=60).status == "succeeded"
    assert 0.2 <= time.monotonic() - started < 10
    timer.join()
    assert store.settled("run-x")


def test_a_read_only_log_made_before_the_queue_has_every_run_settled(
        sqlite_db: Path, origin: Origin) -> None:
    with RunStore(sqlite_db) as runs:
        runs.create("run-x", workflow="post-deploy", event=origin)
        assert runs.finish("run-x", "succeeded", "ok")
    with sqlite3.connect(sqlite_db) as conn:  # as an older version left it
        conn.execute("DROP TABLE run_ends")
    with RunStore(sqlite_db, read_only=True) as reader:
        assert reader.settled("run-x")
        assert reader.wait("run-x", timeout=5).status == "succeeded"


def test_a_static_token_run_is_not_queued(store: RunStore, origin: Origin) -> None:
    """It holds no token of its own: the service token it used is no run's."""
    store.create("run-s", workflow="post-deploy", event=origin, mode="static")
    assert store.finish("run-s", "succeeded", "ok")
    assert store.ended() == [] and store.settled("run-s")


def test_a_run_read_with_its_start_only(store: RunStore, origin: Origin) -> None:
    """What a revocation's record needs of a run, without reading every event."""
    store.create("run-x", workflow="post-deploy", event=origin)
    store.add_event("run-x", None, detail("started", idp="https://idp.example"))
    store.add_event("run-x", "agent:infrabot", detail("exchanged"))
    assert store.finish("run-x", "succeeded", "ok")
    light = store.get("run-x", kinds=("started",))
    full = store.get("run-x")
    assert light is not None and full is not None
    assert [e.kind for e in light.events] == ["started"]
    assert [e.kind for e in full.events] == ["started", "exchanged", "finished"]
    assert (light.user, light.status, light.idp) == (full.user, "succeeded", "https://idp.example")
