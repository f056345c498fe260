"""The one hop every agent performs (DESIGN.md sections 3 and 7).

For each step: exchange the token it was handed for a narrow token for that step's service and
scope (RFC 8693, ``resource`` = the service), call the service with it, and record what happened.
Then exchange for a hand-off token for the next agent (``audience`` = that agent). The agent
authenticates every exchange with its own key. Service calls carry an ``Idempotency-Key`` derived
from the task id, so a redelivered hop changes nothing twice.

Denials are permanent and end the run; transient faults raise
:class:`~orchestrator.errors.TransientError` for the task to retry. No token is returned in
anything but :attr:`HopOutcome.next_token`, which goes straight into the next task's message.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from agents._runtime import AgentRuntime
from mock_services.catalog import CATALOG, build_request
from orchestrator.client import reason_of
from orchestrator.errors import InvalidRequest, OAuthError, Unavailable
from orchestrator.runs import Run
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

    def __repr__(self) -> str:  # never shows the token
        return f"HopOutcome({self.status!r}, {self.reason!r}, next={self.next_agent!r})"


def _ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


def template_values(run: Run) -> dict[str, object]:
    owner, _, repo = run.repository.partition("/")
    started = int(run.created_at.timestamp())
    return {"service": run.service, "environment": run.environment, "repository": run.repository,
            "owner": owner, "repo": repo, "commit": run.commit,
            "pr": run.pr if run.pr is not None else 0, "run_id": run.run_id,
            "user": run.user.removeprefix("user:"), "now": started,
            "window_start": started - 900}


class _Stop(Exception):
    def __init__(self, outcome: HopOutcome) -> None:
        self.outcome = outcome


@dataclass
class _Hop:
    rt: AgentRuntime
    run: Run
    workflow: Workflow
    agent: str
    task_id: str
    mode: str

    def event(self, kind: str, detail: dict[str, Any]) -> None:
        self.rt.runs.add_event(self.run.run_id, kind, self.agent, detail)

    def exchange(self, token: str, *, what: str, **target: str) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            result = self.rt.auth(self.agent).exchange(token, **target)
        except OAuthError as exc:
            self.event("exchange_denied", {"for": what, "requested": target.get("scope"),
                                           "error": exc.code, "reason": exc.reason,
                                           "ms": _ms(start)})
            expired = isinstance(exc, InvalidRequest) and exc.reason == "token_expired"
            raise _Stop(HopOutcome("expired" if expired else "denied",
                                   f"{self.agent} exchange for {what}: {exc.code} ({exc.reason})")
                        ) from exc
        self.event("exchanged", {"for": what, "requested": target.get("scope"),
                                 "granted": result.get("scope"),
                                 "expires_in": result.get("expires_in"),
                                 "claims": unverified_claims(result.get("access_token")),
                                 "ms": _ms(start)})
        return result

    def call(self, index: int, action_name: str, params: dict[str, Any], token: str) -> None:
        action = CATALOG[action_name]
        method, path, query, body = build_request(action_name, params)
        key = f"{self.task_id}.{index}"
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": key}
        if action.mutating:
            headers["Idempotency-Key"] = key
        start = time.perf_counter()
        url = self.rt.service_url(action.service) + path
        try:
            response = self.rt.http.request(method, url, params=query, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"{action.service} unreachable: {type(exc).__name__}",
                              reason=f"{action.service}_unreachable") from exc
        if response.status_code >= 500:
            raise Unavailable(f"{action.service} answered {response.status_code}",
                              reason=f"{action.service}_http_{response.status_code}")
        reason = reason_of(response)
        allowed = response.status_code < 400
        self.event("called" if allowed else "call_denied", {
            "service": action.service, "action": action.audit_action, "method": method,
            "path": path, "status": response.status_code, "reason": reason,
            "replayed": response.headers.get("Idempotent-Replayed") == "true",
            "ms": _ms(start)})
        if not allowed:
            status: Status = "denied" if response.status_code in (401, 403) else "failed"
            raise _Stop(HopOutcome(status, f"{self.agent} {action.audit_action} at "
                                           f"{action.service}: {response.status_code} ({reason})"))


def unverified_claims(token: object) -> dict[str, Any] | None:
    """The claims of a token this agent was just issued, decoded WITHOUT verification, for the
    run log's display only (never for a decision). The token itself is never recorded."""
    if not isinstance(token, str):
        return None
    # Decoded by hand, not with jwt.decode: PyJWT's decoder checks the base64url alphabet one
    # character at a time in Python, a cost every exchange of every hop paid for a display.
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, RecursionError, TypeError):  # binascii.Error is a ValueError
        return None
    if not isinstance(claims, dict):
        return None
    keep = ("sub", "aud", "scope", "iat", "exp", "jti", "act", "may_act", "client_id")
    return {k: claims[k] for k in keep if k in claims}


def perform_hop(rt: AgentRuntime, *, run_id: str, workflow: str, agent: str, token: str,
                scope: str, task_id: str, mode: str = "delegated") -> HopOutcome:
    """One agent's part of a run. Raises TransientError for faults worth a retry."""
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
    plan = rt.workflows[workflow].plan(agent)
    hop = _Hop(rt, run, rt.workflows[workflow], agent, task_id, mode)
    values = template_values(run)
    try:
        for index, step in enumerate(plan.steps):
            action = CATALOG[step.action]
            service_token = token
            if mode == "delegated":
                service_token = hop.exchange(
                    token, what=step.action, resource=rt.service_url(action.service),
                    scope=action.scope)["access_token"]
            hop.call(index, step.action, step.rendered_params(values), service_token)
        if plan.hand_off is None:
            return HopOutcome("succeeded")
        if mode != "delegated":
            return HopOutcome("handed_off", next_agent=plan.hand_off, next_token=token,
                              next_scope=scope)
        handed = set(scope.split())
        wanted = [s for s in downstream_scopes(hop.workflow, agent) if s in handed]
        wanted = wanted or downstream_scopes(hop.workflow, agent)
        result = hop.exchange(token, what=f"hand-off to {plan.hand_off}",
                              audience=plan.hand_off, scope=" ".join(wanted))
        hop.event("handed_off", {"to": plan.hand_off, "scope": result.get("scope")})
        return HopOutcome("handed_off", next_agent=plan.hand_off,
                          next_token=result["access_token"], next_scope=result.get("scope"))
    except _Stop as stop:
        return stop.outcome
