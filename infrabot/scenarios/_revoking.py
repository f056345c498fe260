"""A mid-run revocation for a scenario, made honestly and deterministically.

The runner watches the run log in this process and, the moment the named agent's
``handed_off`` event (or the run's ``root_granted`` event) is recorded, asks the authorization
server's ``/revocations`` endpoint, as the orchestrator client, to revoke the user or the run.
That moment is after the hand-off token is issued and before the next agent's task is enqueued,
so no timing can let a hop slip past the revocation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrabot.scenarios._model import Revocation, Scenario
from orchestrator.runs import EventDetail, HandedOff, RootGranted, RunEvent, RunStore, Started

if TYPE_CHECKING:
    from infrabot.system import System


class _RevokingRuns(RunStore):
    """The run log, which also revokes at the scenario's chosen moment of the scenario's run."""

    def __init__(self, target: Path | str, delivery: str, rule: Revocation,
                 revoke: Callable[[str], str]) -> None:
        super().__init__(target)
        self._delivery = delivery
        self._rule = rule
        self._revoke = revoke
        self._run_id: str | None = None
        self.notes: list[str] = []
        self.error: str | None = None

    def add_event(self, run_id: str, agent: str | None, detail: EventDetail) -> RunEvent:
        event = super().add_event(run_id, agent, detail)
        if isinstance(detail, Started) and detail.delivery == self._delivery:
            self._run_id = run_id
        moment = (isinstance(detail, RootGranted) if self._rule.after == "root_grant"
                  else isinstance(detail, HandedOff) and agent == self._rule.after)
        if moment and run_id == self._run_id and not self.notes and self.error is None:
            try:
                self.notes.append(self._revoke(run_id))
            except Exception as exc:  # noqa: BLE001 - reported as the scenario's error
                self.error = f"revocation failed: {type(exc).__name__}: {exc}"
        return event


@dataclass
class _NoRevocation:
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@contextlib.contextmanager
def revoking(system: System, scenario: Scenario, delivery: str) -> Iterator[Any]:
    """While the block runs, the run log the orchestrator and agents write revokes on cue."""
    rule = scenario.changes.revoke
    if rule is None:
        yield _NoRevocation()
        return
    user = rule.user or scenario.event.user_id

    def revoke(run_id: str) -> str:
        if rule.what == "user":
            system.orchestrator.auth.revoke_by(user=user)
        else:
            system.orchestrator.auth.revoke_by(run_id=run_id)
        when = "the root grant" if rule.after == "root_grant" else f"{rule.after} handed off"
        return f"revoked {rule.what} {user if rule.what == 'user' else run_id} after {when}"

    original = (system.orchestrator.runs, system.runtime.runs)
    observer = _RevokingRuns(system.runtime.runs.target, delivery, rule, revoke)
    system.orchestrator.runs = system.runtime.runs = observer
    try:
        yield observer
    finally:
        system.orchestrator.runs, system.runtime.runs = original
        observer.close()
