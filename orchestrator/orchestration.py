"""The orchestrator: roots each run in a CI event and hands it to the first agent.

For an event it picks the workflow, computes what the workflow needs, and obtains from the
authorization server the run's root token (RFC 7523 grant as the trusted orchestrator client):
``sub`` the user, ``ctx`` the event, ``may_act`` the first agent, scope = needed ∩ held ∩ context
policy. The root grant's dropped scopes are recorded; a refused root grant ends the run as
``denied``. In static-token mode it skips all of that and hands the one service token along.

It hands the first hop to whatever :class:`Dispatch` it is given (the composition root passes
the agents' Celery publisher, :func:`agents.tasks.dispatcher`); the core never imports the agents.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from orchestrator._log import get_logger
from orchestrator.ci import CIEvent
from orchestrator.client import AuthClient
from orchestrator.errors import ConfigError, OAuthError, Unavailable
from orchestrator.identity import Context, Directory
from orchestrator.runs import RootDenied, RootGranted, RunStore, Started, shown_claims
from orchestrator.tracing import current_trace_id, own_span
from orchestrator.workflows import Workflow, required_scopes, select

ROOT_GRANT_ATTEMPTS = 3


class Dispatch(Protocol):
    """Publish an agent's hop: the agent, the run, the workflow, the token it acts with, the
    token's scope and the run's mode (``delegated`` or ``static``). Raises when the broker
    cannot take it."""

    def __call__(self, agent: str, run_id: str, workflow: str, token: str, scope: str,
                 mode: str) -> None: ...


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:16]}"


@dataclass
class Orchestrator:
    directory: Directory
    workflows: dict[str, Workflow]
    runs: RunStore
    auth: AuthClient
    dispatch: Dispatch
    static_token: str | None = None

    def workflow_for(self, event: CIEvent, name: str | None = None) -> Workflow:
        if name is not None:
            if name not in self.workflows:
                raise ConfigError(f"no workflow named {name!r}", reason="unknown_workflow")
            return self.workflows[name]
        return select(self.workflows, event_type=event.event_type,
                      environment=event.environment, trigger=event.trigger, task=event.task)

    def start(self, event: CIEvent, *, mode: str = "delegated", workflow: str | None = None,
              run_id: str | None = None, user_token: str | None = None) -> str:
        """Create the run, root it, enqueue the first agent; return the run id.

        With ``user_token`` (a person's identity-provider token, ``user_request`` runs) the root
        is that token exchanged, not the orchestrator's RFC 7523 grant; it is never stored."""
        wf = self.workflow_for(event, workflow)
        if event.trigger == "user_request" and event.environment not in wf.trigger.environments:
            raise ConfigError(f"{wf.name} does not run in {event.environment}",
                              reason="environment_not_handled")
        run_id = run_id or new_run_id()
        with own_span(f"run {wf.name}", run_id=run_id, on_behalf_of=event.user,
                      trigger=event.trigger, environment=event.environment):
            return self._start(event, wf, run_id, mode, user_token)

    def _start(self, event: CIEvent, wf: Workflow, run_id: str, mode: str,
               user_token: str | None) -> str:
        ctx = Context(trigger=event.trigger, environment=event.environment,
                      repository=event.repository, commit=event.commit, run_id=run_id)
        self.runs.create(run_id, workflow=wf.name, event=event, mode=mode)
        self.runs.add_event(run_id, None, Started(
            event=event.event_type, delivery=event.delivery_id, user=event.user,
            trigger=event.trigger, environment=event.environment, service=event.service,
            commit=event.commit, mode=mode, idp=event.idp, trace_id=current_trace_id()))
        if mode == "static":
            if not self.static_token:
                raise Unavailable("static-token mode is not enabled", reason="static_mode_off")
            token, scope = self.static_token, ""
        else:
            granted = self._root(run_id, wf, event.user, ctx, user_token)
            if granted is None:
                return run_id
            token, scope = granted
        try:  # running before it is published: a failure here has published nothing
            self.runs.mark_running(run_id)
        except Unavailable as exc:
            self._settle(run_id, "failed", f"not started: {exc.reason}")
            raise
        try:
            self.dispatch(wf.root_agent, run_id, wf.name, token, scope, mode)
        except Exception as exc:  # kombu's OperationalError and friends: the broker is down
            # The publication is in doubt: a sender's retry is safe only once this run is ended
            # (a hop of it that did go out then finds it terminal and does nothing).
            if self._settle(run_id, "failed", f"broker unavailable ({type(exc).__name__})"):
                raise Unavailable("the broker cannot be reached",
                                  reason="broker_unavailable") from exc
        return run_id  # dispatched (or in doubt and not ended): never raise, never start twice

    def _root(self, run_id: str, wf: Workflow, user: str, ctx: Context,
              user_token: str | None) -> tuple[str, str] | None:
        needed = required_scopes(wf)
        held = list(self.directory.users[user].permissions) if user in self.directory.users else []
        for attempt in range(1, ROOT_GRANT_ATTEMPTS + 1):
            try:
                result = (self.auth.user_root_token(user_token, needed, ctx, wf.root_agent)
                          if user_token is not None
                          else self.auth.root_token(user, needed, ctx, wf.root_agent))
                break
            except OAuthError as exc:
                self.runs.add_event(run_id, None, RootDenied(
                    needed=needed, error=exc.code, reason=exc.reason))
                self._finish(run_id, "denied", f"root grant: {exc.code} ({exc.reason})")
                return None
            except Unavailable as exc:
                if attempt == ROOT_GRANT_ATTEMPTS:  # nothing started: the sender may redeliver
                    self._finish(run_id, "failed", f"root grant: {exc.reason}")
                    raise Unavailable("the authorization server cannot be reached: the run "
                                      "was not started", reason=exc.reason) from exc
                time.sleep(0.2 * attempt)
        granted = result["scope"].split()
        self.runs.add_event(run_id, None, RootGranted(
            user_permissions=held, needed=needed, granted=granted,
            dropped=[s for s in needed if s not in granted], may_act=wf.root_agent,
            expires_in=result["expires_in"], claims=shown_claims(result["access_token"])))
        return result["access_token"], result["scope"]

    def _finish(self, run_id: str, status: str, reason: str) -> bool:
        return self.runs.finish(run_id, status, reason)

    def _settle(self, run_id: str, status: str, reason: str) -> bool:
        """End the run; whether this call did. False, logged, if the run log refused (the run
        deadline ends it) or something else ended it first (a hop of it ran)."""
        try:
            if self._finish(run_id, status, reason):
                return True
        except Unavailable as exc:
            get_logger(run_id=run_id).error("run_unsettled", status=status, reason=reason,
                                            error=exc.reason)
            return False
        get_logger(run_id=run_id).warning("run_ended_already", status=status, reason=reason)
        return False
