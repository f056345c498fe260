"""What a scenario's event actually did, read from the webhook's answer and the run's event log.

Each agent's hop becomes a list of :class:`Attempt`: one per exchange it made, in order (a
workflow step with the service call after it, or the hand-off to the next agent). A retried hop
starts its list over, as the hop itself does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infrabot.scenarios._model import HAND_OFF
from orchestrator.runs import (
    CallDenied,
    Called,
    Exchanged,
    ExchangeDenied,
    Retrying,
    RootDenied,
    RootGranted,
    Run,
    StepSkipped,
)

FIELDS = ("step", "to", "exchange", "call", "error", "status", "reason", "granted")


@dataclass
class Attempt:
    """One exchange of a hop and, for a step, the service call made with its token."""

    step: str
    exchange: str  # allow | deny | skipped (a step whose when: did not hold)
    call: str | None = None
    error: str | None = None
    status: int | None = None
    reason: str | None = None
    granted: tuple[str, ...] | None = None
    to: str | None = None  # a hand-off's agent

    def value(self, name: str) -> Any:
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k in FIELDS if (v := self.value(k)) is not None}


@dataclass
class Root:
    outcome: str  # granted | denied | none
    granted: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    error: str | None = None
    reason: str | None = None


@dataclass
class Outcome:
    """The facts expectations are compared with."""

    webhook_status: int
    webhook_reason: str
    run: Run | None = None
    root: Root = field(default_factory=lambda: Root("none"))
    hops: dict[str, list[Attempt]] = field(default_factory=dict)
    tokens: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (whose, scopes)
    replay: tuple[str | None, str | None, str | None] = (None, None, None)  # outcome, error, why

    @classmethod
    def of(cls, status: int, body: dict[str, Any], run: Run | None) -> Outcome:
        reason = str(body.get("reason") or body.get("status") or f"http_{status}")
        outcome = cls(status, reason, run)
        if run is not None:
            outcome._read(run)
        return outcome

    def _read(self, run: Run) -> None:
        for event in run.events:
            d = event.detail
            if isinstance(d, RootGranted):
                self.root = Root("granted", tuple(d.granted), tuple(d.dropped))
                self.tokens.append(("root grant", self.root.granted))
            elif isinstance(d, RootDenied):
                self.root = Root("denied", error=d.error, reason=d.reason)
            elif event.agent is None:
                continue
            elif isinstance(d, Retrying):
                self.hops[event.agent] = []
            elif isinstance(d, Exchanged | ExchangeDenied):
                self._exchange(event.agent, d)
            elif isinstance(d, Called | CallDenied):
                self._call(event.agent, d)
            elif isinstance(d, StepSkipped):
                self.hops.setdefault(event.agent, []).append(Attempt(d.action, "skipped"))

    def _exchange(self, agent: str, d: Exchanged | ExchangeDenied) -> None:
        step = HAND_OFF if d.hand_off is not None else d.for_
        attempts = self.hops.setdefault(agent, [])
        call = None if step == HAND_OFF else "not_run"
        if isinstance(d, Exchanged):
            granted = tuple(sorted((d.granted or "").split()))
            attempts.append(Attempt(step, "allow", call, granted=granted, to=d.hand_off))
            self.tokens.append((f"{agent} {step}", granted))
        else:
            attempts.append(Attempt(step, "deny", call, error=d.error, reason=d.reason,
                                    to=d.hand_off))

    def _call(self, agent: str, d: Called | CallDenied) -> None:
        attempts = self.hops.get(agent)
        if not attempts or attempts[-1].step == HAND_OFF:
            return  # a call without an exchange (static-token mode): not a delegated step
        last = attempts[-1]
        last.call = "allow" if isinstance(d, Called) else "deny"
        last.status = d.status
        if isinstance(d, CallDenied):
            last.reason = d.reason
