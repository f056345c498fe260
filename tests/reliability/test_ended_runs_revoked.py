"""A run's tokens die with it (``orchestrator._run_end``): every run that ends is revoked by run
id, until its last token has expired, and the revocation is recorded (``<run>.ended``).

First the sweep itself, on a real run log and audit store (SQLite): what it revokes, records and
forgets; a run revoked already; a registry or an audit trail that is down; the hook and the
periodic sweep at once; the run deadline's runs. Then end to end, against the real authorization
server (embedded, real HTTP): a token of a run that succeeded is refused once ``wait`` returns
it; and a run ended by another process (a worker on another host) is revoked by the serving
process's periodic sweep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e._harness import accepted_run_id, deployment, embedded_settings, post_webhook
from structlog.testing import capture_logs

from infrabot.system import System, running_system
from orchestrator import _run_end as run_end
from orchestrator._run_end import EndedRuns
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.ci import CIEvent
from orchestrator.errors import Unavailable
from orchestrator.identity import REVOKED_KEPT_PAST_EXPIRY_SECONDS, MemoryRevocationStore
from orchestrator.runs import HopJournal, RunStore
from reliability._probes import system_clients

NOW = 1_780_000_000.0
TOKEN_SECONDS = 900
WAIT = 20.0


class Registry(MemoryRevocationStore):
    """The revocation registry; while ``down``, a revocation by run is :class:`Unavailable`."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.down = False

    def revoke_run(self, run_id: str, *, expires_at: int | None = None) -> bool:
        if self.down:
            raise Unavailable("registry unreachable", reason="revocation_unavailable")
        return super().revoke_run(run_id, expires_at=expires_at)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(tmp_path / "runs.sqlite3") as store:
        yield store


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditStore]:
    with AuditStore(tmp_path / "audit.sqlite3", writer="serve-test") as store:
        yield store


def _created(runs: RunStore, run_id: str) -> None:
    event = CIEvent(delivery_id=f"d-{run_id}", event_type="deployment", user="user:sam",
                    repository="acme/service-x", service="service-x", environment="prod",
                    commit="9f2c1e7", trigger="ci_pipeline")
    runs.create(run_id, workflow="post-deploy", event=event)


def _ended(runs: RunStore, run_id: str, status: str = "succeeded") -> None:
    _created(runs, run_id)
    assert runs.finish(run_id, status, "ok" if status == "succeeded" else "broken")


def _records(audit: AuditStore) -> list[tuple[str | None, str, str, str | None, str | None]]:
    return [(r.run_id, r.resource, r.reason, r.request_id, r.on_behalf_of)
            for r in audit.query(service="orchestrator")]


def test_the_sweep_revokes_records_and_forgets_each_ended_run(
        runs: RunStore, audit: AuditStore) -> None:
    registry = Registry()
    _ended(runs, "run-a")
    _ended(runs, "run-b", "failed")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)
    assert sweep.sweep() == ["run-a", "run-b"]
    assert registry._runs == {run: NOW + TOKEN_SECONDS + REVOKED_KEPT_PAST_EXPIRY_SECONDS
                              for run in ("run-a", "run-b")}  # until its last token expired
    assert _records(audit) == [
        (run, f"run_id:{run}", "run_revoked", f"{run}.ended", "user:sam")
        for run in ("run-a", "run-b")]
    assert runs.ended() == []
    assert sweep.sweep() == []  # nothing left
    assert len(_records(audit)) == 2
    assert audit.verify().ok


def test_a_run_revoked_and_recorded_before_is_forgotten_without_a_second_record(
        runs: RunStore, audit: AuditStore) -> None:
    """A process stopped between a revocation and taking the run off the queue."""
    registry = Registry()
    _ended(runs, "run-a")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)
    forget = runs.forget_ended
    runs.forget_ended = lambda run_ids: None  # type: ignore[method-assign]  # it stopped there
    assert sweep.sweep() == ["run-a"]
    runs.forget_ended = forget  # type: ignore[method-assign]  # started again
    assert sweep.sweep() == []
    assert runs.ended() == [] and len(_records(audit)) == 1


def test_a_run_revoked_already_without_the_record_gets_it(
        runs: RunStore, audit: AuditStore) -> None:
    """Revoked by a person while it ran, or a revocation whose answer was lost: the registry
    cannot tell which, so the run's end goes on record all the same, once."""
    registry = Registry()
    registry.revoke_run("run-a")
    _ended(runs, "run-a")
    assert EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW).sweep() == []
    assert _records(audit) == [("run-a", "run_id:run-a", "run_revoked", "run-a.ended",
                                "user:sam")]
    assert runs.ended() == []


def test_a_superseded_run_is_recorded_as_superseded(runs: RunStore, audit: AuditStore) -> None:
    keys = ["sha256:ab"]
    assert runs.claim_delivery(keys[0], ttl=3600, run_id="run-a")
    _created(runs, "run-a")
    HopJournal(runs).send("run-a", "agent:infrabot")
    assert runs.mark_running("run-a")
    assert runs.take_over_started(keys, "run-a", "run-b") == "run-b"
    assert EndedRuns(runs, Registry(), audit, TOKEN_SECONDS, clock=lambda: NOW).sweep() == [
        "run-a"]
    assert [r[3] for r in _records(audit)] == ["run-a.superseded"]


def test_while_the_registry_is_down_every_ended_run_stays_queued(
        runs: RunStore, audit: AuditStore) -> None:
    registry = Registry()
    registry.down = True
    _ended(runs, "run-a")
    _ended(runs, "run-b")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)
    with capture_logs() as logs:
        assert sweep.sweep() == []
    assert [(e["event"], e["run_id"]) for e in logs] == [("ended_run_revoke_failed", "run-a")]
    assert [e.run_id for e in runs.ended()] == ["run-a", "run-b"]
    assert _records(audit) == []
    registry.down = False
    assert sweep.sweep() == ["run-a", "run-b"]
    assert runs.ended() == []


def test_a_revocation_not_yet_on_record_stays_queued_until_it_is(
        runs: RunStore, audit: AuditStore) -> None:
    down = True

    def refuse(record: AuditRecord) -> AuditRecord:
        if down:
            raise Unavailable("audit down", reason="audit_unavailable")
        return record

    audit.before_append(refuse)
    registry = Registry()
    _ended(runs, "run-a")
    _ended(runs, "run-b")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)
    with capture_logs() as logs:
        assert sweep.sweep() == ["run-a"]  # revoked: the revocation stands; the sweep stops
    assert [(e["event"], e["cause"]) for e in logs] == [("run_revocation_audit_failed", "ended")]
    assert set(registry._runs) == {"run-a"}
    assert [e.run_id for e in runs.ended()] == ["run-a", "run-b"]
    down = False
    assert sweep.sweep() == ["run-b"]  # run-a revoked before; now on record, once
    assert runs.ended() == []
    assert [r[3] for r in _records(audit)] == ["run-a.ended", "run-b.ended"]


def test_the_hook_settles_its_own_run_only(runs: RunStore, audit: AuditStore) -> None:
    registry = Registry()
    _ended(runs, "run-a")
    _ended(runs, "run-b")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)
    sweep.run_ended("run-b")
    sweep.run_ended("run-z")  # not queued (ended before the queue, say): nothing to do
    assert set(registry._runs) == {"run-b"}
    assert [e.run_id for e in runs.ended()] == ["run-a"]  # left to the tick
    assert [r[3] for r in _records(audit)] == ["run-b.ended"]


def test_a_run_the_deadline_revoked_and_ended_gets_its_record_once(
        runs: RunStore, audit: AuditStore) -> None:
    """The deadline revokes (for a day) before it ends the run; the end queued then finds it
    revoked, leaves the longer revocation in place and writes the deadline's record."""
    registry = Registry()
    _created(runs, "run-a")
    assert registry.revoke_run("run-a")
    assert runs.finish("run-a", "failed", "deadline_exceeded: not finished within 5 s",
                       cause="deadline_exceeded")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)
    sweep.run_ended("run-a")
    assert registry._runs["run-a"] == NOW + 24 * 3600  # not shortened
    assert [r[3] for r in _records(audit)] == ["run-a.deadline_exceeded"]
    assert runs.settled("run-a") and sweep.sweep() == []
    assert len(_records(audit)) == 1


def test_a_run_log_that_fails_the_hook_is_left_to_the_next_tick(
        runs: RunStore, audit: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_ended`` runs in the finishing thread, after its commit: it never raises there."""
    registry = Registry()
    _ended(runs, "run-a")
    sweep = EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW)

    def down(run_id: str) -> None:  # a database locked past its busy timeout
        raise Unavailable("database is locked", reason="run_log_unavailable")

    monkeypatch.setattr(runs, "queued_end", down)
    with capture_logs() as logs:
        sweep.run_ended("run-a")
    assert [(e["event"], e["run_id"]) for e in logs] == [("ended_run_sweep_failed", "run-a")]
    assert registry._runs == {}


# --- end to end ---------------------------------------------------------------------------------

def _active(system: System, token: str) -> bool:
    with system_clients(system)("client:orchestrator") as orchestrator:
        return bool(orchestrator.introspect(token)["active"])


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _capturing(system: System) -> dict[str, str]:
    """Every first hop's token, by run, as its start publishes it."""
    tokens: dict[str, str] = {}
    publish = system.orchestrator.dispatch

    def dispatch(agent: str, run_id: str, workflow: str, token: str, *rest: object) -> None:
        tokens[run_id] = token
        publish(agent, run_id, workflow, token, *rest)

    system.orchestrator.dispatch = dispatch
    return tokens


def test_a_token_of_a_run_that_succeeded_is_refused_once_wait_returns(
        tmp_path: Path) -> None:
    with running_system(embedded_settings(tmp_path / "state")) as system:
        tokens = _capturing(system)
        run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
        run = system.runtime.runs.wait(run_id, timeout=WAIT)
        assert (run.status, run.reason) == ("succeeded", "ok")
        assert not _active(system, tokens[run_id])  # wait returns a run once it is revoked
        [record] = [r for r in system.stack.audit.query(run_id=run_id, service="orchestrator")]
        assert (record.action, record.reason, record.request_id, record.performed_by) == (
            "revoke", "run_revoked", f"{run_id}.ended", "client:orchestrator")
        assert record.context["trace_id"] == run.trace_id
        assert system.runtime.runs.ended() == []
        assert system.stack.audit.verify().ok


def test_a_run_ended_by_another_process_is_revoked_by_the_periodic_sweep(
        tmp_path: Path) -> None:
    with running_system(embedded_settings(tmp_path / "state"), embedded_worker=False) as system:
        tokens = _capturing(system)
        run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
        assert _active(system, tokens[run_id])  # running: its hop was never taken
        with RunStore(system.runtime.runs.target) as worker:  # a worker's own connection
            assert worker.finish(run_id, "failed", "broken", agent="agent:infrabot")
        ended = datetime.now(UTC)
        _until(lambda: not _active(system, tokens[run_id]), "the run's root stayed active")
        assert (datetime.now(UTC) - ended).total_seconds() < 5  # a tick is a second
        assert [r.request_id for r in system.stack.audit.query(
            run_id=run_id, service="orchestrator")] == [f"{run_id}.ended"]


def test_the_hook_waits_briefly_for_a_sweep_under_way(
        runs: RunStore, audit: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep holds the lock through its registry calls; a run ending meanwhile waits for it
    a moment at most, then is left to the tick, and each run is recorded once."""
    monkeypatch.setattr(run_end, "HOOK_WAIT_SECONDS", 0.3)
    inside, go = threading.Event(), threading.Event()

    class Slow(Registry):
        def revoke_run(self, run_id: str, *, expires_at: int | None = None) -> bool:
            inside.set()
            assert go.wait(WAIT)
            return super().revoke_run(run_id, expires_at=expires_at)

    _ended(runs, "run-a")
    ended = EndedRuns(runs, Slow(), audit, TOKEN_SECONDS, clock=lambda: NOW)
    sweeping = threading.Thread(target=ended.sweep)
    sweeping.start()
    assert inside.wait(WAIT)
    _ended(runs, "run-b")
    started = time.monotonic()
    with capture_logs() as logs:
        ended.run_ended("run-b")  # returns after its wait: the sweep holds the lock
    assert 0.3 <= time.monotonic() - started < 5
    assert [(e["event"], e["run_id"]) for e in logs] == [
        ("ended_run_left_to_the_sweep", "run-b")]
    assert [e.run_id for e in runs.ended()] == ["run-a", "run-b"]
    go.set()
    sweeping.join()
    assert [e.run_id for e in runs.ended()] == ["run-b"]  # not in that sweep's read
    assert ended.sweep() == ["run-b"]
    assert [r[3] for r in _records(audit)] == ["run-a.ended", "run-b.ended"]


def test_a_record_that_can_never_be_written_is_given_up_not_retried(
        runs: RunStore, audit: AuditStore) -> None:
    """A run's row rewritten by someone with the run log's credentials to hold what no audit
    record may: the revocation stands, the failure is logged, and the queue moves on."""
    registry = Registry()
    _ended(runs, "run-a")
    _ended(runs, "run-b")
    with runs._write() as tx:
        tx.execute('UPDATE runs SET "user" = ? WHERE run_id = ?', ("user:\x00sam", "run-a"))
    with capture_logs() as logs:
        assert EndedRuns(runs, registry, audit, TOKEN_SECONDS, clock=lambda: NOW).sweep() == [
            "run-a", "run-b"]
    assert [e["event"] for e in logs] == ["run_revocation_audit_failed"]
    assert runs.ended() == [] and [r[3] for r in _records(audit)] == ["run-b.ended"]
