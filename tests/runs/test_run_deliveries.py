"""The run log's record of CI deliveries: the webhook receiver's replay guard that is on disk, so
it outlives a restart of the process or of an unpersisted Redis."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.errors import Unavailable
from orchestrator.runs import RunStore
from orchestrator.runs._schema import SCHEMA_VERSION

from .conftest import Clock, Origin, at_once

DAY = 24 * 3600


def test_a_delivery_is_claimed_once(store: RunStore) -> None:
    assert store.claim_delivery("d-1", ttl=DAY) is True
    assert store.claim_delivery("d-1", ttl=DAY) is False
    assert store.claim_delivery("d-2", ttl=DAY) is True


def test_a_delivery_is_remembered_by_the_next_process(db: Path | str) -> None:
    with RunStore(db) as first:
        assert first.claim_delivery("d-1", ttl=DAY)
    with RunStore(db) as after_a_restart:
        assert after_a_restart.claim_delivery("d-1", ttl=DAY) is False


def test_a_released_delivery_may_be_claimed_again(store: RunStore) -> None:
    assert store.claim_delivery("d-1", ttl=DAY)
    store.release_delivery("d-1")
    assert store.claim_delivery("d-1", ttl=DAY) is True
    store.release_delivery("never-claimed")  # nothing to forget: no error


def test_deliveries_older_than_the_ttl_are_forgotten(
        store: RunStore, clock: Clock, db: Path | str) -> None:
    assert store.claim_delivery("d-old", ttl=60)
    clock.now += timedelta(seconds=59)
    assert store.claim_delivery("d-old", ttl=60) is False
    clock.now += timedelta(seconds=2)
    assert store.claim_delivery("d-new", ttl=60)  # this claim clears what has expired
    assert store.claim_delivery("d-new", ttl=60) is False  # kept
    clock.now += timedelta(seconds=1)
    assert store.claim_delivery("d-old", ttl=60) is True  # forgotten


def test_concurrent_claims_of_one_delivery_have_exactly_one_winner(db: Path | str) -> None:
    wins = at_once(db, 8, lambda runs: ["won"] if runs.claim_delivery("d-race", ttl=DAY) else [])
    assert wins == ["won"]


def test_a_damaged_run_log_is_unavailable(sqlite_db: Path) -> None:
    """The receiver answers this 503 and releases its claim: nothing is lost or half-done."""
    db = sqlite_db
    with RunStore(db) as store:
        assert store.claim_delivery("d-1", ttl=DAY)
        for path in (db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm"))):
            with path.open("r+b") as damaged:
                damaged.write(b"not a database" * 8)
        with pytest.raises(Unavailable) as info:
            store.claim_delivery("d-2", ttl=DAY)
    assert info.value.reason == "run_log_unavailable"


def test_a_delivery_id_holding_a_raw_jwt_is_refused(store: RunStore) -> None:
    with pytest.raises(ValueError, match="raw JWT"):
        store.claim_delivery("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
                             ttl=DAY)


def test_a_version_1_run_log_gains_the_table_and_keeps_its_runs(
        sqlite_db: Path, origin: Origin) -> None:
    db = sqlite_db
    with RunStore(db) as store:
        store.create("run-kept", workflow="post-deploy", event=origin)
    with sqlite3.connect(db) as conn:  # the file as version 1 left it
        conn.execute("DROP TABLE deliveries")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    with RunStore(db) as store:
        assert store.get("run-kept") is not None
        assert store.claim_delivery("d-1", ttl=DAY) is True
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_take_over_that_ends_a_run_owns_its_claim(store: RunStore, origin: Origin) -> None:
    """The run a take-over ends and the claim it moves are one transaction: the start it ended
    (alive, only slow) answering its own refusal at once cannot mark the claim answered in
    between, which left the delivery answered with no run alive (a CI run found 5 concurrent
    redeliveries all answered 409)."""
    keys = ["sha256:ab", "deployment:7"]
    for key in keys:
        assert store.claim_delivery(key, ttl=DAY, run_id="run-x")
    store.create("run-x", workflow="post-deploy", event=origin)  # a start, alive but slow

    def the_ended_start_answers(run_id: str) -> None:  # its mark_running fails: 409
        if run_id == "run-x":
            store.answer_delivery(keys, "run-x")

    store.on_finish(the_ended_start_answers)
    assert store.take_over_delivery(keys, "run-x", "run-y") == "run-y"
    run = store.get("run-x")
    assert run is not None and run.status == "failed"
    for key in keys:
        claim = store.delivery_claim(key)
        assert claim is not None and (claim.run_id, claim.state) == ("run-y", "starting")
    assert not store.mark_running("run-x")  # the slow start publishes nothing
