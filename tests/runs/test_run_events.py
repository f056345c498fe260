"""Typed run events: every kind round-trips through the run log on SQLite and PostgreSQL in the
stored format it always had, and a detail that is not its kind's model is refused, when it is
written and when it is read, with ``bad_event_detail``."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.runs import (
    EVENT_KINDS,
    EventDetailError,
    Exchanged,
    Finished,
    Run,
    RunEvent,
    RunStore,
    Started,
    parse_detail,
)
from orchestrator.runs._events import detail_json
from tests._events import DEFAULTS, detail
from tests._postgres import raw

from .conftest import Origin

KINDS = sorted(DEFAULTS)


def test_the_union_holds_exactly_the_documented_kinds() -> None:
    assert EVENT_KINDS == frozenset(KINDS) == frozenset({
        "started", "root_granted", "root_denied", "exchanged", "exchange_denied", "called",
        "call_denied", "handed_off", "step_skipped", "branch_taken", "branch_ended",
        "retrying", "finished"})


def test_a_named_step_keeps_its_answer_and_an_unnamed_one_stores_as_it_always_did() -> None:
    named = detail("called", step_id="latency", result={"series": [{"pointlist": [[1, 9.5]]}]})
    assert json.loads(detail_json(named))["result"] == {"series": [{"pointlist": [[1, 9.5]]}]}
    assert "step_id" not in json.loads(detail_json(detail("called")))


def test_an_exchange_asked_ahead_says_so_and_one_asked_in_time_stores_as_it_always_did() -> None:
    ahead = detail("exchanged", ahead=True)
    assert json.loads(detail_json(ahead))["ahead"] is True
    assert parse_detail("exchanged", json.loads(detail_json(ahead))) == ahead
    assert "ahead" not in json.loads(detail_json(detail("exchanged")))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_round_trips_through_the_run_log(
        kind: str, store: RunStore, db: Path | str, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    written = detail(kind)
    event = store.add_event("run-1", "agent:infrabot", written)
    assert (event.kind, event.detail) == (kind, written)

    run = store.get("run-1")
    assert run is not None
    (read,) = run.events
    assert (read.kind, read.agent, type(read.detail)) == (kind, "agent:infrabot", type(written))
    assert read.detail == written and read == event
    # Stored as before: the detail's JSON object, keys sorted, without the kind (a column).
    assert _stored(db) == [(kind, json.dumps(DEFAULTS[kind], sort_keys=True,
                                             separators=(",", ":")))]


def test_the_json_of_a_run_keeps_its_shape_and_reads_back(store: RunStore,
                                                          origin: Origin) -> None:
    """``runs show --json`` and ``demo --json`` dump runs with ``model_dump(mode="json")``."""
    store.create("run-1", workflow="post-deploy", event=origin)
    store.add_event("run-1", "agent:infrabot",
                    detail("exchanged", for_="github.pull.read", claims={"sub": "user:sam"}))
    store.finish("run-1", "succeeded", "ok")
    run = store.get("run-1")
    assert run is not None
    dumped = run.model_dump(mode="json")
    exchanged, finished = dumped["events"]
    assert list(exchanged) == ["run_id", "seq", "time", "kind", "agent", "detail"]
    assert exchanged["kind"] == "exchanged"
    assert exchanged["detail"] == {**DEFAULTS["exchanged"], "for": "github.pull.read",
                                   "claims": {"sub": "user:sam"}}
    assert list(exchanged["detail"]) == sorted(exchanged["detail"])  # as the log stores it
    assert finished["detail"] == {"reason": "ok", "status": "succeeded"}
    assert Run.model_validate(dumped) == run
    assert Run.model_validate_json(json.dumps(dumped)) == run


# -- refused when written --------------------------------------------------------------------

def test_a_detail_that_is_not_an_event_model_is_refused(store: RunStore,
                                                        origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    with pytest.raises(EventDetailError, match="one of the event models, not dict") as caught:
        store.add_event("run-1", None, {"user": "user:sam"})  # type: ignore[arg-type]
    assert caught.value.reason == "bad_event_detail"
    assert _events(store) == ()


def test_a_model_built_without_validation_is_validated_when_written(
        store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    unchecked = Exchanged.model_construct(for_="github.pull.read", requested=None,
                                          granted=None, expires_in="soon", claims=None, ms=3)
    with pytest.raises(EventDetailError, match=r"^exchanged event detail does not validate: "
                                               r"expires_in: Input should be a valid integer"):
        store.add_event("run-1", "agent:infrabot", unchecked)
    assert _events(store) == ()


def test_a_malformed_detail_cannot_be_built() -> None:
    with pytest.raises(ValidationError, match="ms"):
        Exchanged(for_="github.pull.read", requested=None, granted=None, expires_in=1,
                  claims=None, ms=-1)
    with pytest.raises(ValidationError, match="status"):
        Finished(status="running", reason="ok")  # type: ignore[arg-type]
    with pytest.raises(EventDetailError, match="n: Extra inputs are not permitted"):
        parse_detail("started", {**DEFAULTS["started"], "n": 1})


def test_an_event_and_its_detail_must_agree_on_the_kind() -> None:
    with pytest.raises(ValidationError, match="kind 'called' cannot hold a 'started' detail"):
        RunEvent(run_id="run-1", seq=1, time=datetime.now(UTC), kind="called",
                 detail=detail("started"))
    event = RunEvent(run_id="run-1", seq=1, time=datetime.now(UTC), kind="started",
                     detail=detail("started"))
    assert isinstance(event.detail, Started)


# -- refused when read -----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "stored", "message"), [
    ("exchanged", {k: v for k, v in DEFAULTS["exchanged"].items() if k != "ms"},
     "exchanged event detail does not validate: ms: Field required"),
    ("called", {**DEFAULTS["called"], "status": "two hundred"},
     ("called event detail does not validate: status: Input should be a valid integer, "
      "unable to parse string as an integer")),
    ("started", {**DEFAULTS["started"], "n": 1},
     "started event detail does not validate: n: Extra inputs are not permitted"),
    ("exploded", {}, "unknown run event kind 'exploded'"),
    ("finished", ["succeeded", "ok"], "finished event detail must be a JSON object"),
], ids=["missing", "wrong type", "extra", "unknown kind", "not an object"])
def test_a_stored_detail_that_is_not_its_kind_s_model_is_refused_when_read(
        kind: str, stored: object, message: str, store: RunStore, db: Path | str,
        origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    store.add_event("run-1", None, detail("started"))
    _tamper(db, kind, json.dumps(stored))
    for read in (lambda: store.get("run-1"), lambda: store.list()):
        with pytest.raises(EventDetailError) as caught:
            read()
        assert str(caught.value) == f"run run-1 event 1: {message}"
        assert caught.value.reason == "bad_event_detail"


def test_a_stored_detail_that_is_not_json_is_refused_when_read(
        store: RunStore, db: Path | str, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    store.add_event("run-1", None, detail("started"))
    _tamper(db, "started", "{not json")
    with pytest.raises(EventDetailError, match=r"^run run-1 event 1: detail is not JSON: "
                                               r"Expecting property name"):
        store.get("run-1")


def _events(store: RunStore) -> tuple[RunEvent, ...]:
    run = store.get("run-1")
    assert run is not None
    return run.events


def _stored(db: Path | str) -> list[tuple[str, str]]:
    sql = "SELECT kind, detail FROM events WHERE run_id = 'run-1' ORDER BY seq"
    if isinstance(db, str):
        with raw(db) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    with closing(sqlite3.connect(db)) as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


def _tamper(db: Path | str, kind: str, detail_text: str) -> None:
    """What a damaged log, or another version of the code, left in event 1 of run-1."""
    sql = "UPDATE events SET kind = ?, detail = ? WHERE run_id = 'run-1' AND seq = 1"
    if isinstance(db, str):
        with raw(db) as conn:
            conn.execute(sql, (kind, detail_text))
        return
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(sql, (kind, detail_text))
