"""The run log: lifecycle, first terminal status wins, no tokens in events, listing and waiting."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from orchestrator.runs import EventDetail, Finished, RunExists, RunStore, Timed, UnknownRun
from orchestrator.runs._store import SETTLE_SECONDS
from tests._events import detail

from .conftest import T0, Clock, Origin

# Shaped like a compact JWS: three base64url segments, the first one "{" encoded.
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"


def test_a_run_goes_from_pending_to_running_to_a_terminal_status(
        store: RunStore, origin: Origin) -> None:
    created = store.create("run-1", workflow="post-deploy", event=origin, mode="delegated")
    assert created.status == "pending" and created.created_at == T0
    store.add_event("run-1", None, detail("started", user="user:sam"))
    assert store.mark_running("run-1") is True
    assert store.mark_running("run-1") is False
    store.add_event("run-1", "agent:infrabot", detail("exchanged", granted="urn:infra:repo:read"))
    assert store.finish("run-1", "succeeded", "ok") is True

    run = store.get("run-1")
    assert run is not None
    assert (run.status, run.reason, run.workflow, run.user) == (
        "succeeded", "ok", "post-deploy", "user:sam")
    assert (run.trigger, run.environment, run.repository, run.commit, run.service, run.pr) == (
        "ci_pipeline", "prod", "acme/service-x", "9f2c1e7", "service-x", 42)
    assert run.mode == "delegated" and run.terminal
    assert [(e.seq, e.kind, e.agent) for e in run.events] == [
        (1, "started", None), (2, "exchanged", "agent:infrabot"), (3, "finished", None)]
    assert run.events[1].detail == detail("exchanged", granted="urn:infra:repo:read")
    assert run.events[2].detail == Finished(status="succeeded", reason="ok")  # same transaction
    assert run.events[0].time == T0 + timedelta(milliseconds=5)
    assert run.finished_at is not None and run.duration_ms == 15


def test_creating_an_existing_run_id_is_refused(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    with pytest.raises(RunExists) as caught:
        store.create("run-1", workflow="other", event=Origin(user="user:alex"))
    assert caught.value.reason == "run_exists"
    run = store.get("run-1")
    assert run is not None and (run.workflow, run.user) == ("post-deploy", "user:sam")


def test_the_first_terminal_status_wins(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    assert store.finish("run-1", "denied", "agent:argocd exchange: invalid_scope") is True
    assert store.finish("run-1", "succeeded", "ok") is False
    assert store.finish("run-1", "denied", "again") is False
    assert store.mark_running("run-1") is False
    run = store.get("run-1")
    assert run is not None
    assert (run.status, run.reason) == ("denied", "agent:argocd exchange: invalid_scope")


def test_concurrent_finishers_have_exactly_one_winner(db: Path | str, origin: Origin) -> None:
    with RunStore(db) as setup:
        setup.create("run-1", workflow="post-deploy", event=origin)
    statuses = ["succeeded", "denied", "failed", "expired"] * 4
    wins: list[str] = []
    barrier = threading.Barrier(len(statuses))

    def finish(status: str) -> None:
        with RunStore(db) as runs:
            barrier.wait()
            if runs.finish("run-1", status, status):
                wins.append(status)

    threads = [threading.Thread(target=finish, args=(s,)) for s in statuses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with RunStore(db) as runs:
        run = runs.get("run-1")
    assert len(wins) == 1 and run is not None and run.status == wins[0]


def test_finish_refuses_a_status_that_is_not_terminal(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    for status in ("pending", "running", "handed_off"):
        with pytest.raises(ValueError, match="terminal"):
            store.finish("run-1", status, "no")


def test_operations_on_an_unknown_run_raise_unknown_run(store: RunStore) -> None:
    for call in (lambda: store.add_event("nope", None, detail("started")),
                 lambda: store.mark_running("nope"),
                 lambda: store.finish("nope", "failed", "x")):
        with pytest.raises(UnknownRun) as caught:
            call()
        assert caught.value.reason == "unknown_run"
    assert store.get("nope") is None


class Exploded(Timed):
    """A detail model the run log does not know: not a member of EventDetail."""

    kind: Literal["exploded"] = Field("exploded", exclude=True)


def test_unknown_event_kinds_are_refused(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    with pytest.raises(ValueError, match="kind") as caught:
        store.add_event("run-1", None, Exploded(ms=1))  # type: ignore[arg-type]
    assert caught.value.reason == "bad_event_detail"  # type: ignore[attr-defined]
    run = store.get("run-1")
    assert run is not None and run.events == ()


@pytest.mark.parametrize("refused", [
    detail("exchanged", granted=JWT),
    detail("exchange_denied", reason=f"Bearer {JWT}"),
    detail("exchanged", claims={"nested": {"list": ["ok", JWT]}}),
    detail("exchanged", claims={JWT: "as a key"}),
], ids=["value", "inside a value", "nested", "key"])
def test_an_event_detail_holding_a_raw_jwt_is_refused(
        store: RunStore, origin: Origin, refused: EventDetail) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    with pytest.raises(ValueError, match="JWT") as caught:
        store.add_event("run-1", "agent:infrabot", refused)
    assert JWT not in str(caught.value)
    run = store.get("run-1")
    assert run is not None and run.events == ()


def test_a_finish_reason_holding_a_raw_jwt_is_refused(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    with pytest.raises(ValueError, match="JWT"):
        store.finish("run-1", "failed", f"bad token {JWT}")
    run = store.get("run-1")
    assert run is not None and run.status == "pending"


def test_details_must_be_json(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    with pytest.raises(ValueError, match="JSON"):
        store.add_event("run-1", "agent:infrabot", detail("exchanged", claims={"scopes": {"a"}}))
    with pytest.raises(ValueError, match="larger"):
        store.add_event("run-1", "agent:infrabot", detail("exchanged", claims={"b": "x" * 20_000}))


def test_list_is_newest_first_and_filters_by_status_and_user(
        store: RunStore, origin: Origin) -> None:
    for index, user in enumerate(["user:sam", "user:alex", "user:sam", "user:robin"]):
        store.create(f"run-{index}", workflow="post-deploy", event=Origin(user=user))
        store.add_event(f"run-{index}", None, detail("started", delivery=f"d-{index}"))
    store.finish("run-0", "succeeded", "ok")
    store.finish("run-2", "denied", "no")

    assert [r.run_id for r in store.list()] == ["run-3", "run-2", "run-1", "run-0"]
    assert [r.run_id for r in store.list(2)] == ["run-3", "run-2"]
    assert [r.run_id for r in store.list(status="denied")] == ["run-2"]
    assert [r.run_id for r in store.list(user="user:sam")] == ["run-2", "run-0"]
    assert [r.run_id for r in store.list(status="pending", user="user:sam")] == []
    assert [e.detail for e in store.list(1)[0].events] == [detail("started", delivery="d-3")]
    assert store.list(0) == []
    with pytest.raises(ValueError, match="limit"):
        store.list(-1)


def test_wait_returns_once_the_run_is_terminal(db: Path | str, origin: Origin) -> None:
    with RunStore(db) as runs:
        runs.create("run-1", workflow="post-deploy", event=origin)

        def finish_later() -> None:
            time.sleep(0.1)
            with RunStore(db) as other:
                other.finish("run-1", "succeeded", "ok")
                other.forget_ended(["run-1"])  # revoked, as the serving process does

        thread = threading.Thread(target=finish_later)
        thread.start()
        started = time.monotonic()
        run = runs.wait("run-1", timeout=30)
        thread.join()
    assert run.status == "succeeded"
    assert time.monotonic() - started < SETTLE_SECONDS  # at once, not at a timeout


def test_wait_times_out_with_a_clear_message(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    store.mark_running("run-1")
    with pytest.raises(TimeoutError, match=r"run run-1 is still running after waiting 0.05 s"):
        store.wait("run-1", timeout=0.05)
    with pytest.raises(TimeoutError, match="run run-9 does not exist"):
        store.wait("run-9", timeout=0.05)


def test_the_file_is_private_and_in_wal_mode(sqlite_db: Path) -> None:
    RunStore(sqlite_db).close()
    assert stat.S_IMODE(sqlite_db.stat().st_mode) == 0o600
    with closing(sqlite3.connect(sqlite_db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_closed_store_refuses_use(db: Path | str, origin: Origin) -> None:
    runs = RunStore(db, clock=Clock())
    runs.close()
    runs.close()
    with pytest.raises(ValueError, match="closed"):
        runs.create("run-1", workflow="post-deploy", event=origin)


def test_the_mode_is_kept_and_must_be_known(store: RunStore, origin: Origin) -> None:
    store.create("run-s", workflow="post-deploy", event=origin, mode="static")
    run = store.get("run-s")
    assert run is not None and run.mode == "static"
    with pytest.raises(ValueError, match="mode"):
        store.create("run-x", workflow="post-deploy", event=origin, mode="bearer")
    assert store.get("run-x") is None
