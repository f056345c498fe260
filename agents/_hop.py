"""The one hop every agent performs (DESIGN.md sections 3 and 7).

For each step: exchange the token it was handed for a narrow token for that step's service and
scope (RFC 8693, ``resource`` = the service), call the service with it, and record what happened.
Then exchange for a hand-off token for the next agent (``audience`` = that agent). The agent
authenticates every exchange with its own key.

Every step is journaled (:mod:`orchestrator.runs._journal`, docs/journal.md): recorded as
started, with its ``Idempotency-Key`` (from run, agent and step), before its call, and its
outcome after. A redelivered or retried hop resumes at the first step without an outcome and
repeats the one whose outcome is in doubt only under its recorded key; a recorded denial is the
hop's outcome again, never retried. The hand-off takes a journaled generation before it is
published, and a hop handed an older generation than the journal's does nothing.

Denials are permanent and end the run; transient faults raise
:class:`~orchestrator.errors.TransientError` for the task to retry. No token is returned in
anything but :attr:`HopOutcome.next_token`, which goes straight into the next task's message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from agents._runtime import AgentRuntime
from orchestrator.catalog import CATALOG, build_request
from orchestrator.client import reason_of
from orchestrator.errors import InvalidRequest, OAuthError, Unavailable
from orchestrator.runs import (
    HAND_OFF,
    STOPS,
    CallDenied,
    Called,
    EventDetail,
    Exchanged,
    ExchangeDenied,
    HandedOff,
    HopJournal,
    Run,
    StepConflict,
    StepRecord,
    resume_point,
    shown_claims,
)
from orchestrator.workflows import Workflow, downstream_scopes

Status = Literal["handed_off", "succeeded", "denied", "failed", "expired", "duplicate"]
MODES = ("delegated", "static")


@dataclass(frozen=True)
class HopOutcome:
    status: Status
    reason: str = "ok"
    next_agent: str | None = None
    next_token: str | None = None
    next_scope: str | None = None
    generation: int = 0  # the hand-off's journaled generation, for the next task's message

    def __repr__(self) -> str:  # never shows the token
        return f"HopOutcome({self.status!r}, {self.reason!r}, next={self.next_agent!r})"


def _ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


def template_values(run: Run, workflow: Workflow) -> dict[str, object]:
    """What a step's ``${name}`` params are filled with: the workflow's values for the run's
    environment, and the run's built-in fields (as text, as they always rendered)."""
    owner, _, repo = run.repository.partition("/")
    started = int(run.created_at.timestamp())
    built_in = {"service": run.service, "environment": run.environment,
                "repository": run.repository, "owner": owner, "repo": repo,
                "commit": run.commit, "pr": run.pr if run.pr is not None else 0,
                "run_id": run.run_id, "user": run.user.removeprefix("user:"), "now": started,
                "window_start": started - 900}
    return {**workflow.values_for(run.environment),
            **{k: str(v) for k, v in built_in.items()}}


class _Stop(Exception):
    def __init__(self, outcome: HopOutcome) -> None:
        self.outcome = outcome


def _stopped(record: StepRecord) -> _Stop:
    """The hop's outcome a recorded stop implies, exactly as it was recorded."""
    return _Stop(HopOutcome(record.state, record.reason or record.state))  # type: ignore[arg-type]


# A service that has this key's first request in flight (another copy of the hop, or a
# service process that died mid-request): not an answer, so the step stays in doubt.
_IN_FLIGHT = "idempotency_key_in_use"


@dataclass
class _Hop:
    rt: AgentRuntime
    run: Run
    workflow: Workflow
    agent: str
    journal: HopJournal

    def event(self, detail: EventDetail) -> None:
        self.rt.runs.add_event(self.run.run_id, self.agent, detail)

    def exchange(self, token: str, *, step: int, what: str, prove: bool,
                 **target: str) -> dict[str, Any]:
        """A token for step ``step`` (``prove``: with a DPoP proof); a refusal is journaled as
        that step's outcome."""
        start = time.perf_counter()
        try:
            result = self.rt.auth(self.agent).exchange(
                token, prove=prove, resource=target.get("resource"),
                audience=target.get("audience"), scope=target.get("scope"))
        except OAuthError as exc:
            expired = isinstance(exc, InvalidRequest) and exc.reason == "token_expired"
            record = self.journal.stop(
                self.run.run_id, self.agent, step, what, "expired" if expired else "denied",
                reason=f"{self.agent} exchange for {what}: {exc.code} ({exc.reason})",
                event=ExchangeDenied(for_=what, requested=target.get("scope"), error=exc.code,
                                     reason=exc.reason, ms=_ms(start)))
            raise _stopped(record) from exc
        self.event(Exchanged(for_=what, requested=target.get("scope"),
                             granted=result.get("scope"), expires_in=result.get("expires_in"),
                             claims=shown_claims(result.get("access_token")), ms=_ms(start)))
        return result

    def call(self, index: int, action_name: str, params: dict[str, Any], token: str,
             bound: bool = False) -> None:
        """Journal the step as started (its key), call, journal the outcome with its event.
        ``bound``: the token is DPoP-bound, so it goes with a proof by the agent's key."""
        action = CATALOG[action_name]
        method, path, query, body = build_request(action_name, params)
        try:
            key = self.journal.start(self.run.run_id, self.agent, index,
                                     action_name).idempotency_key
        except StepConflict as conflict:  # a copy of this hop recorded it meanwhile
            self._follow(conflict.record)
            return
        url = self.rt.service_url(action.service) + path
        headers = {"X-Request-Id": key, **(self.rt.dpop(self.agent).headers(method, url, token)
                                           if bound else {"Authorization": f"Bearer {token}"})}
        if action.mutating:
            headers["Idempotency-Key"] = key
        start = time.perf_counter()
        try:
            response = self.rt.http.request(method, url, params=query, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"{action.service} unreachable: {type(exc).__name__}",
                              reason=f"{action.service}_unreachable") from exc
        reason = reason_of(response)
        if response.status_code >= 500 or reason == _IN_FLIGHT:
            raise Unavailable(f"{action.service} answered {response.status_code}",
                              reason=f"{action.service}_http_{response.status_code}")
        allowed = response.status_code < 400
        call: dict[str, Any] = {  # a Called or a CallDenied
            "service": action.service, "action": action.audit_action, "method": method,
            "path": path, "status": response.status_code, "reason": reason,
            "replayed": response.headers.get("Idempotent-Replayed") == "true", "ms": _ms(start)}
        if allowed:
            if not self.journal.finish(self.run.run_id, self.agent, index, "done", reason=None,
                                       event=Called(**call)):
                self._follow(self._record(index))
            return
        status: Literal["denied", "failed"] = ("denied" if response.status_code in (401, 403)
                                               else "failed")
        text = f"{self.agent} {action.audit_action} at {action.service}: " \
               f"{response.status_code} ({reason})"
        self.journal.finish(self.run.run_id, self.agent, index, status, reason=text,
                            event=CallDenied(**call))
        raise _stopped(self._record(index))

    def _record(self, index: int) -> StepRecord:
        return self.journal.steps(self.run.run_id, self.agent)[index]

    @staticmethod
    def _follow(record: StepRecord) -> None:
        """Go on as the outcome another copy of the hop recorded says."""
        if record.state in STOPS:
            raise _stopped(record)


def perform_hop(rt: AgentRuntime, *, run_id: str, workflow: str, agent: str, token: str,
                scope: str, mode: str = "delegated", generation: int = 0) -> HopOutcome:
    """One agent's part of a run, resumed from its journal. Raises TransientError for faults
    worth a retry. ``generation``: the journaled hand-off this message carries (0 for the
    first agent, whom the orchestrator enqueues once per run)."""
    run = rt.runs.get(run_id)
    if run is None:
        return HopOutcome("failed", "unknown_run")
    if run.status in ("succeeded", "denied", "failed", "expired") or rt.runs.hop_done(run_id,
                                                                                        agent):
        return HopOutcome("duplicate", "hop already done")
    if mode == "delegated" and not rt.holds_key(agent):
        return HopOutcome("failed", f"{agent}: this worker holds no key for {agent} (a task "
                                    "misrouted to another agent's queue); it never signs with "
                                    "another agent's key")
    journal = HopJournal(rt.runs)
    if generation and not journal.receive(run_id, agent, generation):
        return HopOutcome("duplicate", "stale hand-off")
    plan = rt.workflows[workflow].plan(agent)
    hop = _Hop(rt, run, rt.workflows[workflow], agent, journal)
    values = template_values(run, hop.workflow)
    handing_off = len(plan.steps)  # the hand-off exchange is journaled as the step after
    resume = resume_point(journal.steps(run_id, agent), handing_off + 1)
    try:
        if resume.stopped is not None:
            raise _stopped(resume.stopped)
        for index in range(resume.step, handing_off):
            step = plan.steps[index]
            action = CATALOG[step.action]
            service_token, bound = token, False
            if mode == "delegated":
                issued = hop.exchange(token, step=index, what=step.action,
                                      prove=rt.proves(action.service),
                                      resource=rt.service_url(action.service),
                                      scope=action.scope)
                service_token, bound = issued["access_token"], issued["token_type"] == "DPoP"
            hop.call(index, step.action, step.rendered_params(values), service_token, bound)
        if plan.hand_off is None:
            return HopOutcome("succeeded")
        sending = journal.send(run_id, plan.hand_off)
        if sending is None:  # published by an earlier attempt: never twice
            return HopOutcome("handed_off", next_agent=plan.hand_off)
        if mode != "delegated":
            return HopOutcome("handed_off", next_agent=plan.hand_off, next_token=token,
                              next_scope=scope, generation=sending)
        handed = set(scope.split())
        wanted = [s for s in downstream_scopes(hop.workflow, agent) if s in handed]
        wanted = wanted or downstream_scopes(hop.workflow, agent)
        result = hop.exchange(token, step=handing_off, what=f"{HAND_OFF}{plan.hand_off}",
                              prove=rt.proves(None), audience=plan.hand_off,
                              scope=" ".join(wanted))
        hop.event(HandedOff(to=plan.hand_off, scope=result.get("scope")))
        return HopOutcome("handed_off", next_agent=plan.hand_off,
                          next_token=result["access_token"], next_scope=result.get("scope"),
                          generation=sending)
    except _Stop as stop:
        return stop.outcome
