"""A redelivery's take-over of a delivery whose run was marked running but whose first hop no hop
ever received (:meth:`RunStore.take_over_started`): the start died, or hangs, between
``mark_running`` and its publish returning. The hand-off's generation is renewed, the old run
ended and the claim moved in one transaction under the run's lock, so of the old start's copy
and the new run exactly one is ever performed; a run whose first hop was received is alive and
keeps its delivery. On SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

from orchestrator.runs import HopJournal, RunStore

from .conftest import Origin, at_once

DAY = 24 * 3600
KEYS = ["sha256:ab", "deployment:7"]
FIRST = "agent:infrabot"


def _started(store: RunStore, origin: Origin, run_id: str = "run-x") -> int:
    """A start, as the orchestrator does it, stopped after marking its run running: the
    generation it was about to publish."""
    for key in KEYS:
        assert store.claim_delivery(key, ttl=DAY, run_id=run_id)
    store.create(run_id, workflow="post-deploy", event=origin)
    generation = HopJournal(store).send(run_id, FIRST)
    assert generation == 1
    assert store.mark_running(run_id)
    return generation


def _claims(store: RunStore) -> set[tuple[str, str]]:
    found = {store.delivery_claim(key) for key in KEYS}
    return {(claim.run_id, claim.state) for claim in found if claim is not None}


def test_a_run_whose_first_hop_was_never_received_is_taken_over(
        store: RunStore, origin: Origin) -> None:
    generation = _started(store, origin)
    journal = HopJournal(store)

    assert store.take_over_started(KEYS, "run-x", "run-y") == "run-y"

    ended = store.get("run-x")
    assert ended is not None and ended.status == "failed"
    assert ended.reason == ("superseded by run run-y: its delivery was received again before "
                            "its first hop was published")
    assert _claims(store) == {("run-y", "starting")}  # the new run's start marks it started
    hand_off = journal.delivery("run-x", FIRST)
    assert hand_off is not None and (hand_off.state, hand_off.attempts) == ("sending", 2)
    # The old start, had it only been slow: its copy is stale, its record of it changes nothing.
    assert journal.published("run-x", FIRST, generation) is False
    assert journal.receive("run-x", FIRST, generation) is False
    hand_off = journal.delivery("run-x", FIRST)
    assert hand_off is not None and (hand_off.state, hand_off.attempts) == ("sending", 2)
    # Another redelivery finds it taken: a replay.
    assert store.take_over_started(KEYS, "run-x", "run-z") is None
    assert _claims(store) == {("run-y", "starting")}


def test_a_run_whose_first_hop_was_received_keeps_its_delivery(
        store: RunStore, origin: Origin) -> None:
    generation = _started(store, origin)
    journal = HopJournal(store)
    assert journal.receive("run-x", FIRST, generation)  # the hop claimed it: the run is alive

    assert store.take_over_started(KEYS, "run-x", "run-y") is None

    run = store.get("run-x")
    assert run is not None and run.status == "running"
    assert _claims(store) == {("run-x", "started")}
    hand_off = journal.delivery("run-x", FIRST)
    assert hand_off is not None and (hand_off.state, hand_off.attempts) == ("received", 1)


def test_a_run_whose_first_hop_was_published_keeps_its_delivery(
        store: RunStore, origin: Origin) -> None:
    """The publish returned (``sent``): the hop is in the broker, whoever answers the sender."""
    generation = _started(store, origin)
    assert HopJournal(store).published("run-x", FIRST, generation) is True
    assert store.take_over_started(KEYS, "run-x", "run-y") is None
    run = store.get("run-x")
    assert run is not None and run.status == "running"


def test_an_answered_delivery_is_not_taken_over(store: RunStore, origin: Origin) -> None:
    _started(store, origin)
    store.answer_delivery(KEYS, "run-x")
    assert store.take_over_started(KEYS, "run-x", "run-y") is None
    run = store.get("run-x")
    assert run is not None and run.status == "running"


def test_a_run_started_without_a_journaled_hand_off_is_not_taken_over(
        store: RunStore, origin: Origin) -> None:
    """Started by a version that published the first hop as generation 0 (no row): whether its
    hop arrived cannot be told, so its delivery stays refused."""
    for key in KEYS:
        assert store.claim_delivery(key, ttl=DAY, run_id="run-x")
    store.create("run-x", workflow="post-deploy", event=origin)
    assert store.mark_running("run-x")
    assert store.take_over_started(KEYS, "run-x", "run-y") is None
    assert _claims(store) == {("run-x", "started")}


def test_a_stranded_run_the_deadline_ended_is_taken_over(
        store: RunStore, origin: Origin) -> None:
    """The run deadline ended it before the sender redelivered: nothing of it was performed, so
    the redelivery still starts the event's run; the run keeps the reason it ended with."""
    generation = _started(store, origin)
    assert store.finish("run-x", "failed", "deadline_exceeded: not finished")
    assert store.take_over_started(KEYS, "run-x", "run-y") == "run-y"
    run = store.get("run-x")
    assert run is not None and run.reason == "deadline_exceeded: not finished"
    assert _claims(store) == {("run-y", "starting")}
    assert HopJournal(store).receive("run-x", FIRST, generation) is False


def test_of_concurrent_redeliveries_one_takes_it_over(db: Path | str, origin: Origin) -> None:
    with RunStore(db) as store:
        _started(store, origin)
    won = at_once(db, 8, lambda runs: [
        taken for taken in [runs.take_over_started(KEYS, "run-x", f"run-{id(runs)}")]
        if taken is not None])
    assert len(won) == 1
    with RunStore(db) as store:
        assert _claims(store) == {(won[0], "starting")}
        run = store.get("run-x")
        assert run is not None and run.status == "failed"


def test_a_take_over_racing_the_first_hop_either_wins_or_refuses(
        db: Path | str, origin: Origin) -> None:
    """Four redeliveries and four copies of the first hop at once: either a redelivery took it
    over and no copy of the old start's hop proceeds, or a copy claimed it and no take-over
    happened. Never both."""
    with RunStore(db) as store:
        generation = _started(store, origin)

    roles = itertools.cycle(("hop", "take-over"))  # next() on it is atomic

    def race(runs: RunStore) -> list[str]:
        if next(roles) == "hop":
            return ["hop"] if HopJournal(runs).receive("run-x", FIRST, generation) else []
        return ["take-over"] if runs.take_over_started(KEYS, "run-x", "run-y") else []

    outcome = at_once(db, 8, race)
    assert outcome in (["take-over"], ["hop"] * 4), outcome
    with RunStore(db) as store:
        run = store.get("run-x")
        assert run is not None
        if outcome == ["take-over"]:
            assert run.status == "failed" and _claims(store) == {("run-y", "starting")}
        else:
            assert run.status == "running" and _claims(store) == {("run-x", "started")}
