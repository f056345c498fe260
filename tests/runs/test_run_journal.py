"""The hop journal: where a hop resumes (the pure rule), what each record may become, and the
hand-off generations that let exactly one copy of a hand-off be performed. Every test with a
run log runs on SQLite and on PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.runs import (
    DELIVERY_STEP,
    HopJournal,
    Resume,
    RunStore,
    StepConflict,
    StepRecord,
    idempotency_key,
    resume_point,
)
from orchestrator.runs._schema import SCHEMA_VERSION
from tests._events import detail
from tests._postgres import raw

from .conftest import Origin, at_once

RUN, AGENT, NEXT = "run-1", "agent:argocd", "agent:cleanup"
CALLED = detail("called", status=201)


def record(step: int, state: str, *, reason: str | None = None, attempts: int = 1) -> StepRecord:
    return StepRecord(step, "aws.ec2.create_tags", state, idempotency_key(RUN, AGENT, step),
                      reason, attempts)


@pytest.fixture
def journal(store: RunStore, origin: Origin) -> HopJournal:
    store.create(RUN, workflow="post-deploy", event=origin)
    return HopJournal(store)


# -- resume_point: the pure rule ----------------------------------------------------------------

def test_a_fresh_hop_starts_at_its_first_step() -> None:
    assert resume_point({}, 3) == Resume(0)


def test_done_steps_are_skipped_and_the_first_without_an_outcome_is_next() -> None:
    assert resume_point({0: record(0, "done"), 1: record(1, "done")}, 3) == Resume(2)


def test_a_step_recorded_started_is_in_doubt_and_repeated_under_its_key() -> None:
    doubt = record(1, "started", attempts=2)
    assert resume_point({0: record(0, "done"), 1: doubt}, 3) == Resume(1, in_doubt=doubt)
    assert doubt.in_doubt and doubt.idempotency_key == "run-1.argocd.1"


@pytest.mark.parametrize("state", ["denied", "expired", "failed"])
def test_a_recorded_stop_is_the_outcome_never_retried(state: str) -> None:
    stop = record(1, state, reason=f"agent:argocd tags:create at aws: 403 ({state})")
    assert resume_point({0: record(0, "done"), 1: stop}, 3) == Resume(1, stopped=stop)


def test_every_step_done_means_the_hop_goes_on_to_its_hand_off() -> None:
    assert resume_point({0: record(0, "done"), 1: record(1, "done")}, 3) == Resume(2)
    assert resume_point({0: record(0, "done"), 1: record(1, "done")}, 2) == Resume(2)


def test_records_after_the_first_gap_do_not_move_the_resume_point() -> None:
    assert resume_point({1: record(1, "done")}, 3) == Resume(0)


def test_the_key_is_the_same_for_run_agent_and_step_every_time() -> None:
    assert idempotency_key("run-9", "agent:cleanup", 0) == "run-9.cleanup.0"
    assert idempotency_key("run-9", "agent:cleanup", 0) == idempotency_key("run-9",
                                                                           "agent:cleanup", 0)
    assert idempotency_key("run-9", "agent:cleanup", 1) != idempotency_key("run-9",
                                                                           "agent:cleanup", 0)


# -- steps ---------------------------------------------------------------------------------------

def test_a_step_is_recorded_started_with_its_key_before_its_outcome(
        journal: HopJournal, store: RunStore) -> None:
    started = journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    assert (started.state, started.idempotency_key, started.attempts) == \
        ("started", "run-1.argocd.0", 1)
    assert journal.steps(RUN, AGENT) == {0: started}
    assert journal.finish(RUN, AGENT, 0, "done", reason=None, event=CALLED) is True
    assert journal.steps(RUN, AGENT)[0].state == "done"
    run = store.get(RUN)
    assert run is not None and [(e.kind, e.agent, e.detail) for e in run.events] == \
        [("called", AGENT, CALLED)]


def test_starting_an_in_doubt_step_again_keeps_its_key_and_counts_the_attempt(
        journal: HopJournal) -> None:
    first = journal.start(RUN, AGENT, 1, "aws.ec2.create_tags")
    again = journal.start(RUN, AGENT, 1, "aws.ec2.create_tags")
    assert again.idempotency_key == first.idempotency_key
    assert (again.state, again.attempts) == ("started", 2)


def test_a_step_with_an_outcome_cannot_be_started_again(journal: HopJournal) -> None:
    journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    journal.finish(RUN, AGENT, 0, "done", reason=None, event=CALLED)
    with pytest.raises(StepConflict) as caught:
        journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    assert caught.value.record.state == "done" and caught.value.reason == "step_recorded"


def test_an_outcome_is_recorded_once_and_its_event_only_with_it(
        journal: HopJournal, store: RunStore) -> None:
    journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    assert journal.finish(RUN, AGENT, 0, "denied", reason="403 (insufficient_scope)",
                          event=detail("call_denied", status=403)) is True
    assert journal.finish(RUN, AGENT, 0, "done", reason=None, event=CALLED) is False
    assert journal.steps(RUN, AGENT)[0].state == "denied"
    run = store.get(RUN)
    assert run is not None and [e.kind for e in run.events] == ["call_denied"]


def test_a_step_never_started_has_no_outcome_to_finish(journal: HopJournal) -> None:
    assert journal.finish(RUN, AGENT, 3, "done", reason=None, event=CALLED) is False
    assert journal.steps(RUN, AGENT) == {}


def test_a_refused_exchange_is_recorded_as_the_step_s_stop_and_stands(
        journal: HopJournal, store: RunStore) -> None:
    reason = "agent:argocd exchange for aws.ec2.create_tags: invalid_grant (user_revoked)"
    stop = journal.stop(RUN, AGENT, 1, "aws.ec2.create_tags", "denied", reason=reason,
                        event=detail("exchange_denied", reason="user_revoked"))
    assert (stop.state, stop.reason) == ("denied", reason)
    # a retried hop told something else now gets the recorded stop back, and no new event
    later = journal.stop(RUN, AGENT, 1, "aws.ec2.create_tags", "expired", reason="other",
                         event=detail("exchange_denied", reason="token_expired"))
    assert later == stop
    run = store.get(RUN)
    assert run is not None and [e.detail for e in run.events] == \
        [detail("exchange_denied", reason="user_revoked")]


def test_a_refused_exchange_of_an_in_doubt_step_ends_it(journal: HopJournal) -> None:
    journal.start(RUN, AGENT, 1, "aws.ec2.create_tags")
    stop = journal.stop(RUN, AGENT, 1, "aws.ec2.create_tags", "denied", reason="revoked",
                        event=detail("exchange_denied"))
    assert (stop.state, stop.reason) == ("denied", "revoked")


def test_a_done_step_is_not_turned_into_a_stop(journal: HopJournal) -> None:
    journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    journal.finish(RUN, AGENT, 0, "done", reason=None, event=CALLED)
    kept = journal.stop(RUN, AGENT, 0, "github.deployment_status.create", "denied",
                        reason="late", event=detail("exchange_denied"))
    assert kept.state == "done"


def test_records_hold_no_token(journal: HopJournal) -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    with pytest.raises(ValueError, match="raw JWT"):
        journal.finish(RUN, AGENT, 0, "failed", reason=jwt, event=CALLED)
    with pytest.raises(ValueError, match="raw JWT"):
        journal.finish(RUN, AGENT, 0, "done", reason=None, event=detail("called", path=f"/t/{jwt}"))
    assert journal.steps(RUN, AGENT)[0].state == "started"


def test_steps_are_per_run_and_agent(journal: HopJournal, store: RunStore,
                                     origin: Origin) -> None:
    store.create("run-2", workflow="post-deploy", event=origin)
    journal.start(RUN, AGENT, 0, "github.deployment_status.create")
    assert journal.steps("run-2", AGENT) == {}
    assert journal.steps(RUN, NEXT) == {}


# -- hand-offs -----------------------------------------------------------------------------------

def test_a_hand_off_is_published_once_sent(journal: HopJournal) -> None:
    assert journal.send(RUN, NEXT) == 1
    journal.sent(RUN, NEXT, 1)
    assert journal.send(RUN, NEXT) is None  # a redelivered sender does not publish again
    delivery = journal.delivery(RUN, NEXT)
    assert delivery is not None and (delivery.step, delivery.state, delivery.attempts) == \
        (DELIVERY_STEP, "sent", 1)
    assert journal.steps(RUN, NEXT) == {}  # not one of the receiving hop's steps


def test_a_hand_off_in_doubt_is_published_again_under_a_new_generation(
        journal: HopJournal) -> None:
    assert journal.send(RUN, NEXT) == 1  # the sender died before it recorded the publication
    assert journal.send(RUN, NEXT) == 2
    assert journal.receive(RUN, NEXT, 1) is False  # the older copy, if published, is stale
    assert journal.receive(RUN, NEXT, 2) is True
    assert journal.receive(RUN, NEXT, 2) is True  # its own redelivery resumes
    journal.sent(RUN, NEXT, 2)
    delivery = journal.delivery(RUN, NEXT)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("received", 2)


def test_a_received_hand_off_is_never_published_again(journal: HopJournal) -> None:
    assert journal.send(RUN, NEXT) == 1
    assert journal.receive(RUN, NEXT, 1) is True  # received before the sender recorded "sent"
    assert journal.send(RUN, NEXT) is None
    assert journal.receive(RUN, NEXT, 2) is False


BRANCH, JOIN = "agent:scanner", "agent:notifier"


def test_a_fan_out_is_journaled_together(journal: HopJournal) -> None:
    fan_out = (NEXT, BRANCH, JOIN)
    assert journal.send_together(RUN, fan_out) == [1, 1, 1]
    assert journal.send_together(RUN, fan_out) == [2, 2, 2]  # all in doubt: all again
    journal.sent(RUN, NEXT, 2)  # one marked sent, then the sender failed
    assert journal.send_together(RUN, fan_out) is None
    for agent in (BRANCH, JOIN):  # not moved on: the copies published with NEXT's still hold
        delivery = journal.delivery(RUN, agent)
        assert delivery is not None and (delivery.state, delivery.attempts) == ("sending", 2)
    assert journal.receive(RUN, BRANCH, 2) is True


def test_a_fan_out_one_branch_took_is_not_published_again(journal: HopJournal) -> None:
    fan_out = (NEXT, BRANCH, JOIN)
    assert journal.send_together(RUN, fan_out) == [1, 1, 1]
    assert journal.receive(RUN, BRANCH, 1) is True  # before the sender marked anything sent
    assert journal.send_together(RUN, fan_out) is None
    found = [journal.delivery(RUN, agent) for agent in fan_out]
    assert [(d.state, d.attempts) for d in found if d is not None] == \
        [("sending", 1), ("received", 1), ("sending", 1)]


HEADS = (NEXT, BRANCH)  # a fan-out's branches: their first agents


def states(journal: HopJournal, agents: tuple[str, ...]) -> list[tuple[str, int] | None]:
    return [(d.state, d.attempts) if (d := journal.delivery(RUN, a)) else None for a in agents]


def test_a_branch_claims_its_hand_off_only_once_its_fan_out_is_recorded_sent(
        journal: HopJournal) -> None:
    assert journal.send_together(RUN, HEADS) == [1, 1]
    # Published, not yet recorded: the fork may still publish the whole fan-out again.
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "waiting"
    assert states(journal, HEADS) == [("sending", 1), ("sending", 1)]
    assert journal.published_together(RUN, {NEXT: 1, BRANCH: 1}) is True
    assert states(journal, HEADS) == [("sent", 1), ("sent", 1)]
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "claimed"
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "claimed"  # its redelivery resumes
    assert states(journal, HEADS) == [("received", 1), ("sent", 1)]
    assert journal.send_together(RUN, HEADS) is None  # never published again


def test_a_fan_out_whose_fork_stopped_publishing_is_published_again_whole(
        journal: HopJournal) -> None:
    """The fork published NEXT's copy and stopped before BRANCH's: NEXT's hop waits; the fork
    performed again renews both, so NEXT's first copy is stale and the fan-out goes out whole."""
    assert journal.send_together(RUN, HEADS) == [1, 1]
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "waiting"
    assert journal.send_together(RUN, HEADS) == [2, 2]
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "stale"
    # the first attempt's late record changes nothing: its copies are stale
    assert journal.published_together(RUN, {NEXT: 1, BRANCH: 1}) is False
    assert states(journal, HEADS) == [("sending", 2), ("sending", 2)]
    assert journal.published_together(RUN, {NEXT: 2, BRANCH: 2}) is True
    assert journal.receive_branch(RUN, BRANCH, 2, HEADS) == "claimed"
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "stale"
    assert journal.receive_branch(RUN, NEXT, 2, HEADS) == "claimed"


def test_a_branch_of_a_fan_out_partly_past_doubt_claims_at_once(journal: HopJournal) -> None:
    """A fork of before 2026-12-07 recorded its branches sent one by one: once one is, the
    fan-out is never published again, so waiting would gain nothing; the copy given is the one."""
    assert journal.send_together(RUN, HEADS) == [1, 1]
    journal.sent(RUN, NEXT, 1)
    assert journal.receive_branch(RUN, BRANCH, 1, HEADS) == "claimed"


def test_a_branch_hand_off_never_journaled_is_stale(journal: HopJournal) -> None:
    assert journal.receive_branch(RUN, NEXT, 1, HEADS) == "stale"
    assert journal.delivery(RUN, NEXT) is None


def test_racing_forks_and_branches_claim_one_whole_fan_out(db: Path | str,
                                                            origin: Origin) -> None:
    """Copies of the fork, some dying between publishing and recording (they take generations
    and never record them sent), some recording what they took, and copies of both branches'
    first hops, each with its own connection, at once: a branch claims only a generation a fork
    was recording sent (one a dying fork took is never performed), both claim the same one, and
    no fork renews the fan-out after a branch claimed it. (Whether a branch ever sees a dying
    fork's generation is up to the race; test_a_fan_out_whose_fork_stopped_publishing_... shows
    that case deterministically.)"""
    with RunStore(db) as store:
        store.create(RUN, workflow="post-deploy", event=origin)
        assert HopJournal(store).send_together(RUN, HEADS) == [1, 1]  # a fork that died
    roles = iter(["dying fork", "fork", "heads", "dying fork", "fork", "heads"])
    lock, seen = threading.Lock(), []  # in order: "recording g" (before it is), "claimed g"

    def race(runs: RunStore) -> list[str]:
        journal, role, out = HopJournal(runs), next(roles), []
        claimed: set[str] = set()
        for _ in range(8 if role == "dying fork" else 400):  # bounded: until done
            if role != "heads":
                taken = journal.send_together(RUN, HEADS)
                if taken is None:  # past doubt: nothing to publish any more
                    break
                out.append(f"sent {taken[0]}")
                if role == "fork":
                    with lock:
                        seen.append(f"recording {taken[0]}")
                    journal.published_together(RUN, dict(zip(HEADS, taken, strict=True)))
                continue
            for head in sorted(set(HEADS) - claimed):
                delivery = journal.delivery(RUN, head)
                if delivery is not None and \
                        journal.receive_branch(RUN, head, delivery.attempts, HEADS) == "claimed":
                    claimed.add(head)
                    with lock:
                        seen.append(f"claimed {delivery.attempts}")
                    out.append(f"received {head} {delivery.attempts}")
            if claimed == set(HEADS):
                break
        return out

    results = at_once(db, 6, race)
    received = {int(r.split()[-1]) for r in results if r.startswith("received")}
    assert len(received) == 1, results
    generation = received.pop()
    assert {r.split()[1] for r in results if r.startswith("received")} == set(HEADS)
    assert all(int(r.split()[1]) <= generation for r in results if r.startswith("sent"))
    first_claim = seen.index(f"claimed {generation}")
    assert f"recording {generation}" in seen[:first_claim], seen


def test_a_hand_off_never_journaled_is_not_received(journal: HopJournal) -> None:
    assert journal.receive(RUN, NEXT, 1) is False
    assert journal.delivery(RUN, NEXT) is None


def test_racing_senders_and_receivers_perform_one_generation(db: Path | str,
                                                              origin: Origin) -> None:
    """Copies of a sender and of the receiving hop, each with its own connection, at once: the
    generations received are all one, and no sender publishes after it was received."""
    with RunStore(db) as store:
        store.create(RUN, workflow="post-deploy", event=origin)
        assert HopJournal(store).send(RUN, NEXT) == 1

    def race(runs: RunStore) -> list[str]:
        journal = HopJournal(runs)
        out = []
        for _ in range(5):
            sending = journal.send(RUN, NEXT)
            out.append(f"sent {sending}" if sending else "skip")
            delivery = journal.delivery(RUN, NEXT)
            assert delivery is not None
            if journal.receive(RUN, NEXT, delivery.attempts):
                out.append(f"received {delivery.attempts}")
        return out

    results = at_once(db, 6, race)
    received = {r for r in results if r.startswith("received")}
    assert len(received) == 1, results
    generation = int(received.pop().split()[1])
    assert all(int(r.split()[1]) <= generation for r in results if r.startswith("sent"))


# -- the table in the run log --------------------------------------------------------------------

def _version_2(db: Path | str) -> None:
    """Make the run log what version 2 left: no journal, version 2."""
    if isinstance(db, str):
        with raw(db) as conn:
            conn.execute("DROP TABLE journal")
            conn.execute("UPDATE schema_versions SET version = 2 WHERE store = 'runs'")
        return
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DROP TABLE journal")
        conn.execute("PRAGMA user_version = 2")


def _version(db: Path | str) -> int:
    if isinstance(db, str):
        with raw(db) as conn:
            return int(conn.execute("SELECT version FROM schema_versions "
                                    "WHERE store = 'runs'").fetchone()[0])
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_a_version_2_run_log_gains_the_journal_and_keeps_its_runs(
        db: Path | str, origin: Origin) -> None:
    with RunStore(db) as store:
        store.create("run-kept", workflow="post-deploy", event=origin)
    _version_2(db)
    assert _version(db) == 2
    with RunStore(db) as store:
        assert store.get("run-kept") is not None
        journal = HopJournal(store)
        assert journal.start("run-kept", AGENT, 0, "github.pull.read").state == "started"
    assert _version(db) == SCHEMA_VERSION == 3


def test_the_journal_outlives_its_store(db: Path | str, origin: Origin) -> None:
    """What a killed worker recorded is there for the process that resumes the hop."""
    with RunStore(db) as store:
        store.create(RUN, workflow="post-deploy", event=origin)
        HopJournal(store).start(RUN, AGENT, 0, "github.deployment_status.create")
    with RunStore(db) as store:
        [doubt] = HopJournal(store).steps(RUN, AGENT).values()
    assert doubt.in_doubt and doubt.idempotency_key == "run-1.argocd.0"
