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
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from agents._ahead import Ask, Issued, revoke_unused
from agents._runtime import AgentRuntime
from orchestrator._log import get_logger
from orchestrator.catalog import CATALOG, build_request
from orchestrator.client import AuthClient, reason_of
from orchestrator.errors import InvalidRequest, OAuthError, Unavailable
from orchestrator.runs import (
    STOPS,
    CallDenied,
    Called,
    EventDetail,
    Exchanged,
    ExchangeDenied,
    HopJournal,
    Run,
    StepConflict,
    StepRecord,
    StepSkipped,
    shown_claims,
)
from orchestrator.workflows import Workflow

Status = Literal["handed_off", "forked", "branch_done", "succeeded", "denied", "failed",
                 "expired", "duplicate"]
MODES = ("delegated", "static")
MAX_RESULT_BYTES = 8192  # a named step's answer kept for later steps; larger ones are not


@dataclass(frozen=True)
class Delivery:
    """One hop to publish: the agent, the token it acts with, its scope, the generation."""

    agent: str
    token: str
    scope: str
    generation: int

    def __repr__(self) -> str:  # never shows the token
        return f"Delivery({self.agent!r}, generation={self.generation})"


@dataclass(frozen=True)
class HopOutcome:
    status: Status
    reason: str = "ok"
    next_agent: str | None = None
    next_token: str | None = None
    next_scope: str | None = None
    generation: int = 0  # the hand-off's journaled generation, for the next task's message
    branches: tuple[Delivery, ...] = ()  # a fan-out (status forked): its branches' hops
    join: Delivery | None = None  # ... and the join's, published once they are all done

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


def _kept(response: httpx.Response) -> Any:
    """A named step's answer as JSON, if it is JSON and small enough to keep."""
    if len(response.content) > MAX_RESULT_BYTES:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def step_results(run: Run) -> dict[str, Any]:
    """The answers of the run's named steps so far, by step id."""
    return {e.detail.step_id: e.detail.result for e in run.events
            if isinstance(e.detail, Called) and e.detail.step_id is not None}


class Stop(Exception):
    def __init__(self, outcome: HopOutcome) -> None:
        self.outcome = outcome


def stopped(record: StepRecord) -> Stop:
    """The hop's outcome a recorded stop implies, exactly as it was recorded. A step that
    another copy of the hop (running at the same time) recorded done first is no stop: this
    copy is then the duplicate."""
    if record.state not in STOPS:
        return Stop(HopOutcome("duplicate", f"step {record.step} recorded {record.state} by "
                                            "another copy of the hop"))
    return Stop(HopOutcome(record.state, record.reason or record.state))  # type: ignore[arg-type]


# A service that has this key's first request in flight (another copy of the hop, or a
# service process that died mid-request): not an answer, so the step stays in doubt.
_IN_FLIGHT = "idempotency_key_in_use"


@dataclass
class Hop:
    """One agent's hop of one run: its exchanges, calls and journal records."""

    rt: AgentRuntime
    run: Run
    workflow: Workflow
    agent: str
    journal: HopJournal
    # Tokens asked for ahead, by step (overlapped hops): at most one at a time.
    _ahead: dict[int, tuple[Ask, Future[Issued]]] = field(default_factory=dict)

    def event(self, detail: EventDetail) -> None:
        self.rt.runs.add_event(self.run.run_id, self.agent, detail)

    def ask_ahead(self, token: str, *, step: int, what: str, prove: bool,
                  **target: str) -> None:
        """Ask now, on the runtime's pool, for the token step ``step`` will exchange for
        (overlapped hops, docs/journal.md): the caller knows that step will run unless the hop
        stops first. :meth:`exchange` takes it for that same request; :meth:`release` revokes
        it if nothing did."""
        ask = Ask(step, what, prove, (), tuple(sorted(target.items())))
        if step not in self._ahead:
            self._ahead[step] = (ask, self.rt.ahead(lambda: self._ask(token, ask, ahead=True)))

    def exchange(self, token: str, *, step: int, what: str, prove: bool,
                 joined: tuple[str, ...] = (), **target: str) -> dict[str, Any]:
        """A token for step ``step`` (``prove``: with a DPoP proof; ``joined``: a join's
        branch tokens), the one asked for ahead if it was asked for this same request; a refusal
        is journaled as that step's outcome."""
        ask = Ask(step, what, prove, joined, tuple(sorted(target.items())))
        issued, ahead = None, self._ahead.pop(step, None)
        if ahead is not None and ahead[0] == ask and not ahead[1].cancel():
            issued = ahead[1].result()  # asked while the call before was in flight
        elif ahead is not None:
            self._revoke(*ahead)  # not this request (or never started): never used
        if issued is None:
            issued = self._ask(token, ask)
        if isinstance(issued.answer, OAuthError):
            exc = issued.answer
            expired = isinstance(exc, InvalidRequest) and exc.reason == "token_expired"
            record = self.journal.stop(
                self.run.run_id, self.agent, step, what, "expired" if expired else "denied",
                reason=f"{self.agent} exchange for {what}: {exc.code} ({exc.reason})",
                event=ExchangeDenied(for_=what, requested=target.get("scope"), error=exc.code,
                                     reason=exc.reason, ms=issued.ms))
            raise stopped(record) from exc
        result = issued.answer
        self.event(Exchanged(for_=what, requested=target.get("scope"),
                             granted=result.get("scope"), expires_in=result.get("expires_in"),
                             claims=shown_claims(result.get("access_token")), ms=issued.ms,
                             ahead=issued.ahead))
        return result

    def release(self) -> None:
        """The hop is over: revoke every token asked for ahead that no step used (it stopped
        early: a denial, a failed call, a retry, a crash, a way on not taken)."""
        while self._ahead:
            self._revoke(*self._ahead.pop(next(iter(self._ahead))))

    def _ask(self, token: str, ask: Ask, ahead: bool = False) -> Issued:
        """One exchange; a refusal is its answer, a transient fault raises. A proof refused as
        by a revoked key is asked once more, never twice, if the key was replaced meanwhile
        (:meth:`AgentRuntime.replaced_refused_key`, docs/dpop.md)."""
        start = time.perf_counter()
        client = self.rt.auth(self.agent)
        answer = self._exchange(client, token, ask)
        if isinstance(answer, OAuthError) \
                and self.rt.replaced_refused_key(self.agent, client.dpop, answer):
            answer = self._exchange(self.rt.auth(self.agent), token, ask)  # with the new key
        return Issued(answer, _ms(start), ahead)

    @staticmethod
    def _exchange(client: AuthClient, token: str, ask: Ask) -> dict[str, Any] | OAuthError:
        target = dict(ask.target)
        try:
            return client.exchange(token, prove=ask.prove, joined=ask.joined,
                                   resource=target.get("resource"),
                                   audience=target.get("audience"), scope=target.get("scope"))
        except OAuthError as exc:
            return exc

    def _revoke(self, ask: Ask, pending: Future[Issued]) -> None:
        revoke_unused(self.rt.auth(self.agent), ask, pending,
                      get_logger(run_id=self.run.run_id, agent=self.agent, step=ask.step,
                                 for_=ask.what))

    def call(self, index: int, action_name: str, params: dict[str, Any], token: str,
             bound: bool = False, step_id: str | None = None) -> Any:
        """Journal the step as started (its key), call, journal the outcome with its event.
        ``bound``: the token is DPoP-bound, so it goes with a proof by the agent's key."""
        action = CATALOG[action_name]
        method, path, query, body = build_request(action_name, params)
        try:
            key = self.journal.start(self.run.run_id, self.agent, index,
                                     action_name).idempotency_key
        except StepConflict as conflict:  # a copy of this hop recorded it meanwhile
            self._follow(conflict.record)
            return self._recorded_result(step_id)
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
            result = _kept(response) if step_id is not None else None
            if not self.journal.finish(self.run.run_id, self.agent, index, "done", reason=None,
                                       event=Called(**call, step_id=step_id, result=result)):
                self._follow(self._record(index))
            return result
        status: Literal["denied", "failed"] = ("denied" if response.status_code in (401, 403)
                                               else "failed")
        text = f"{self.agent} {action.audit_action} at {action.service}: " \
               f"{response.status_code} ({reason})"
        self.journal.finish(self.run.run_id, self.agent, index, status, reason=text,
                            event=CallDenied(**call))
        raise stopped(self._record(index))

    def skip(self, index: int, action: str, when: str) -> None:
        """A step whose condition did not hold, journaled done so a resumed hop goes past it."""
        try:
            self.journal.start(self.run.run_id, self.agent, index, action)
        except StepConflict:
            return
        self.journal.finish(self.run.run_id, self.agent, index, "done", reason=None,
                            event=StepSkipped(action=action, when=when))

    def _recorded_result(self, step_id: str | None) -> Any:
        """A named step's answer as the copy of the hop that recorded the step kept it."""
        if step_id is None:
            return None
        run = self.rt.runs.get(self.run.run_id)
        return step_results(run).get(step_id) if run is not None else None

    def _record(self, index: int) -> StepRecord:
        return self.journal.steps(self.run.run_id, self.agent)[index]

    @staticmethod
    def _follow(record: StepRecord) -> None:
        """Go on as the outcome another copy of the hop recorded says."""
        if record.state in STOPS:
            raise stopped(record)
