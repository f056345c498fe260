"""The orchestrator journals a run's first hop like any hand-off: generation 1 taken (``sending``)
before the run is marked running, published with the hop, recorded ``sent`` after; a run log
that refuses that last record leaves the run started (the hop claims its hand-off all the same)
and the start answered, never refused for a retry that would start it twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError
from structlog.testing import capture_logs

from orchestrator.errors import Unavailable
from orchestrator.identity import Directory
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import HopJournal, RunExists, RunStore
from orchestrator.workflows import load_workflows

from .test_run_start_faults import WORKFLOWS
from .test_run_start_refusals import EVENT, Auth

FIRST = "agent:infrabot"


@dataclass
class Recorder:
    """The dispatch: what each first hop was published with, and its hand-off then."""

    runs: RunStore
    published: list[tuple[str, int, str | None]] = field(default_factory=list)

    def __call__(self, agent: str, run_id: str, workflow: str, token: str, scope: str,
                 mode: str, generation: int) -> None:
        hand_off = HopJournal(self.runs).delivery(run_id, agent)
        self.published.append((run_id, generation, hand_off.state if hand_off else None))


def _orchestrator(runs: RunStore, directory: Directory, dispatch: Recorder) -> Orchestrator:
    return Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                        auth=Auth(), dispatch=dispatch)  # type: ignore[arg-type]


def test_the_first_hop_is_published_under_a_journaled_generation(
        tmp_path: Path, directory: Directory) -> None:
    with RunStore(tmp_path / "runs.sqlite3") as runs:
        dispatch = Recorder(runs)
        run_id = _orchestrator(runs, directory, dispatch).start(EVENT, run_id="run-first-hop")
        assert dispatch.published == [(run_id, 1, "sending")]
        hand_off = HopJournal(runs).delivery(run_id, FIRST)
        assert hand_off is not None and (hand_off.state, hand_off.attempts) == ("sent", 1)
        assert HopJournal(runs).receive(run_id, FIRST, 1)  # the hop's claim of it


def test_a_first_hop_published_but_not_recorded_sent_leaves_the_run_started(
        tmp_path: Path, directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object) -> None:
        raise Unavailable("disk I/O error", reason="run_log_unavailable")

    with RunStore(tmp_path / "runs.sqlite3") as runs:
        dispatch = Recorder(runs)
        monkeypatch.setattr(HopJournal, "published", refused)
        with capture_logs() as logs:
            run_id = _orchestrator(runs, directory, dispatch).start(EVENT, run_id="run-unsent")
        assert dispatch.published == [(run_id, 1, "sending")]
        run = runs.get(run_id)
        assert run is not None and run.status == "running"
        assert [(e["event"], e["error"]) for e in logs if e["event"] == "hand_off_unrecorded"] \
            == [("hand_off_unrecorded", "run_log_unavailable")]
        monkeypatch.undo()
        assert HopJournal(runs).receive(run_id, FIRST, 1)  # still claimed by its hop


@dataclass
class TakenOverThenRefused:
    """The dispatch: while the publish hangs, a redelivery takes the run's delivery over (as
    ``RunStore.take_over_started`` does); then the broker refuses the publish."""

    runs: RunStore
    keys: tuple[str, ...]

    def __call__(self, agent: str, run_id: str, workflow: str, token: str, scope: str,
                 mode: str, generation: int) -> None:
        assert self.runs.take_over_started(self.keys, run_id, "run-redelivered") is not None
        raise OperationalError("broker gone")


def test_a_start_whose_publish_fails_after_a_take_over_answers_it_was_taken_over(
        tmp_path: Path, directory: Directory) -> None:
    """Not 202 for a run a redelivery superseded: the redelivery ended it (so this start could
    not), and the start says so, as when its publish succeeds (RunExists)."""
    with RunStore(tmp_path / "runs.sqlite3") as runs:
        keys = ("delivery-1",)
        assert runs.claim_delivery(keys[0], ttl=3600, run_id="run-first")
        dispatch, auth = TakenOverThenRefused(runs, keys), Auth()
        orchestrator = Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                                    auth=auth, dispatch=dispatch)  # type: ignore[arg-type]
        with pytest.raises(RunExists):
            orchestrator.start(EVENT, run_id="run-first")
        run = runs.get("run-first")
        assert run is not None and run.status == "failed"
        assert run.reason is not None
        assert run.reason.startswith("superseded by run run-redelivered:")
        assert auth.revoked == ["not-a-jwt"]  # its root token, of a run superseded


def test_a_start_whose_publish_fails_and_cannot_end_its_run_answers_it_started(
        tmp_path: Path, directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The publish in doubt and the run log refusing to end the run: answered as started (never
    a refusal whose retry would start it twice), the hand-off left `sending`, so a redelivery
    may still take the delivery over."""
    def refused(*_: object, **__: object) -> bool:
        raise Unavailable("disk I/O error", reason="run_log_unavailable")

    def broker_gone(*_: object) -> None:
        monkeypatch.setattr(RunStore, "finish", refused)
        raise OperationalError("broker gone")

    with RunStore(tmp_path / "runs.sqlite3") as runs:
        auth = Auth()
        orchestrator = Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                                    auth=auth, dispatch=broker_gone)
        run_id = orchestrator.start(EVENT, run_id="run-in-doubt")
        assert auth.revoked == []  # its hop may be running: its token stands
        monkeypatch.undo()
        hand_off = HopJournal(runs).delivery(run_id, FIRST)
        assert hand_off is not None and (hand_off.state, hand_off.attempts) == ("sending", 1)
