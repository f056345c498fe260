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
from orchestrator.runs import (
    EventDetail,
    Exchanged,
    HandedOff,
    RootGranted,
    RunEvent,
    RunStore,
    Started,
)

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
        self.handed_jti: str | None = None

    def add_event(self, run_id: str, agent: str | None, detail: EventDetail) -> RunEvent:
        event = super().add_event(run_id, agent, detail)
        if isinstance(detail, Started) and detail.delivery == self._delivery:
            self._run_id = run_id
        self._note_hand_off(agent, detail)
        moment = (isinstance(detail, RootGranted) if self._rule.after == "root_grant"
                  else isinstance(detail, HandedOff) and agent == self._rule.after)
        if moment:
            self._now(run_id)
        return event

    def mark_hop_done(self, run_id: str, agent: str, task_id: str) -> bool:
        """The last agent of a fan-out's branch (it hands off to no one): revoked once its hop is
        recorded done, before its task returns (so before a join can start)."""
        done = super().mark_hop_done(run_id, agent, task_id)
        if agent == self._rule.after and self._rule.on_done:
            self._now(run_id)
        return done

    def _now(self, run_id: str) -> None:
        if run_id == self._run_id and not self.notes and self.error is None:
            try:
                self.notes.append(self._revoke(run_id))
            except Exception as exc:  # noqa: BLE001 - reported as the scenario's error
                self.error = f"revocation failed: {type(exc).__name__}: {exc}"

    def _note_hand_off(self, agent: str | None, detail: EventDetail) -> None:
        """Keep the ``jti`` of the token handed off to the agent the rule names."""
        if (self._rule.to is not None and isinstance(detail, Exchanged)
                and detail.hand_off == self._rule.to and detail.claims):
            self.handed_jti = str(detail.claims.get("jti"))


@dataclass
class _NoRevocation:
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@contextlib.contextmanager
def revoking(system: System, scenario: Scenario, delivery: str,
             closing: contextlib.ExitStack) -> Iterator[Any]:
    """While the block runs, the run log the orchestrator and agents write revokes on cue."""
    rule = scenario.changes.revoke
    if rule is None:
        yield _NoRevocation()
        return
    user = rule.user or scenario.event.user_id

    def revoke(run_id: str) -> str:
        when = "the root grant" if rule.after == "root_grant" else \
            f"{rule.after} was done" if rule.on_done else f"{rule.after} handed off"
        if rule.what == "hand_off":
            if observer.handed_jti is None:
                raise ValueError(f"no token was handed off to {rule.to} before {when}")
            system.orchestrator.auth.revoke_by(jti=observer.handed_jti)
            return f"revoked the token handed off to {rule.to} after {when}"
        if rule.what == "user":
            system.orchestrator.auth.revoke_by(user=user)
        else:
            system.orchestrator.auth.revoke_by(run_id=run_id)
        return f"revoked {rule.what} {user if rule.what == 'user' else run_id} after {when}"

    original = (system.orchestrator.runs, system.runtime.runs)
    observer = _RevokingRuns(system.runtime.runs.target, delivery, rule, revoke)
    system.orchestrator.runs = system.runtime.runs = observer
    try:
        yield observer
    finally:
        system.orchestrator.runs, system.runtime.runs = original
        closing.callback(observer.close)  # once the system stops: a hop may still record
