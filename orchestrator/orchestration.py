"""The orchestrator: roots each run in a CI event and hands it to the first agent.

For an event it picks the workflow, computes what the workflow needs, and obtains from the
authorization server the run's root token (RFC 7523 grant as the trusted orchestrator client):
``sub`` the user, ``ctx`` the event, ``may_act`` the first agent, scope = needed ∩ held ∩ context
policy. The root grant's dropped scopes are recorded; a refused root grant ends the run as
``denied``. In static-token mode it skips all of that and hands the one service token along;
with that mode off (no ``static_token``) a static start is a :class:`ConfigError`
(``static_mode_off``) raised before any run is created, as an unknown workflow is. So is a
person's request (``user_request``, ``POST /runs``) naming a workflow that does not run in its
environment (``environment_not_handled``) or does not accept manual runs
(``trigger_not_handled``).

Once the run is created, a start that stops before the first hop is published ends it
``failed`` (``not started: <reason>``; ``root grant: <reason>`` when the authorization server
cannot be reached; ``internal_error`` for anything not the project's own error) and raises: no
run is left ``pending`` for the run deadline, and a sender's redelivery starts a new one. What
it raises names the run (``run_id``): the project's own error as it was, a bug as an
:class:`InternalError` raised from it; a receiver audits its refusal under that run.

A run started for a CI delivery gets the run id the delivery's claim names (the receiver passes
it as ``run_id``). If a redelivery of it took it over while
it was still ``pending`` (:meth:`RunStore.take_over_delivery`: this start seemed dead),
``mark_running`` finds it ended and the start raises :class:`RunExists` instead of publishing
anything; so does a start whose claimed run a redelivery created first.

The first hop is journaled like any hand-off (docs/journal.md): a generation taken before the
run is marked running, published with the hop, recorded ``sent`` after. Until a hop claims it, a
redelivery may take the delivery over (:meth:`RunStore.take_over_started`: this start seemed to
have died before its publish returned): it renews the generation and ends the run, so what this
start publishes is stale and does nothing, and the start, finding its generation renewed when it
records it sent, raises :class:`RunExists` too.

A start that minted the run's root token and raises (the run ended, or taken over) revokes that
token (RFC 7009, so every token exchanged from it too; the authorization server audits it): a
root token lives only as long as the run it was minted for has a chance to use it.

It hands the first hop to whatever :class:`Dispatch` it is given (the composition root passes
the agents' Celery publisher, :func:`agents.tasks.dispatcher`); the core never imports the agents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator._log import get_logger
from orchestrator.ci import CIEvent
from orchestrator.client import AuthClient
from orchestrator.errors import ConfigError, InfraBotError, InternalError, OAuthError, Unavailable
from orchestrator.identity import Context, Directory
from orchestrator.runs import (
    HopJournal,
    RootDenied,
    RootGranted,
    RunExists,
    RunStore,
    Started,
    new_run_id,
    shown_claims,
)
from orchestrator.tracing import current_trace_id, own_span
from orchestrator.workflows import Workflow, required_scopes, select

ROOT_GRANT_ATTEMPTS = 3


def _check_by_hand(wf: Workflow, event: CIEvent) -> None:
    """A person's request (``POST /runs``) names the workflow: it must run in the request's
    environment and accept manual runs (``manual`` in its triggers; a workflow left to CI is
    never started by hand). Its events and task select a workflow for a GitHub event: a request
    that names one has neither to match."""
    if event.environment not in wf.trigger.environments:
        raise ConfigError(f"{wf.name} does not run in {event.environment}",
                          reason="environment_not_handled")
    if "manual" not in wf.trigger.triggers:
        raise ConfigError(f"{wf.name} is not started by hand: it accepts "
                          f"{', '.join(wf.trigger.triggers)} runs only",
                          reason="trigger_not_handled")


def _taken_over(run_id: str) -> RunExists:
    return RunExists(f"run {run_id} was ended before its first hop was published: its "
                     "delivery was taken over by a redelivery", run_id=run_id)


class Dispatch(Protocol):
    """Publish an agent's hop: the agent, the run, the workflow, the token it acts with, the
    token's scope, the run's mode (``delegated`` or ``static``) and the generation of its
    journaled hand-off (docs/journal.md: a copy of an older one does nothing). Raises when the
    broker cannot take it."""

    def __call__(self, agent: str, run_id: str, workflow: str, token: str, scope: str,
                 mode: str, generation: int) -> None: ...


@dataclass
class Orchestrator:
    directory: Directory
    workflows: dict[str, Workflow]
    runs: RunStore
    auth: AuthClient
    dispatch: Dispatch
    static_token: str | None = field(default=None, repr=False)  # a secret: never printed

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
        if event.trigger == "user_request":  # named by a person, not selected by its trigger
            _check_by_hand(wf, event)
        if event.pr is None and "pr" in wf.placeholders():  # not a run doomed at its PR step
            raise ConfigError(f"{wf.name} needs the event's pull request number (a deployment's "
                              "payload.pr), and this event has none", reason="missing_pr")
        run_id = run_id or new_run_id()  # a CI delivery's claim names one
        with own_span(f"run {wf.name}", run_id=run_id, on_behalf_of=event.user,
                      trigger=event.trigger, environment=event.environment):
            return self._start(event, wf, run_id, mode, user_token)

    def _start(self, event: CIEvent, wf: Workflow, run_id: str, mode: str,
               user_token: str | None) -> str:
        if mode == "static" and not self.static_token:  # configuration: no run is created
            raise ConfigError("static-token mode is not enabled: INFRABOT_STATIC_TOKEN is not "
                              "set", reason="static_mode_off")
        ctx = Context(trigger=event.trigger, environment=event.environment,
                      repository=event.repository, commit=event.commit, run_id=run_id)
        self.runs.create(run_id, workflow=wf.name, event=event, mode=mode)
        step = "not started"  # what the reason of a run ended before its first hop begins with
        root: str | None = None  # the root token minted, revoked if the run is not handed off
        try:
            self.runs.add_event(run_id, None, Started(
                event=event.event_type, delivery=event.delivery_id, user=event.user,
                trigger=event.trigger, environment=event.environment, service=event.service,
                commit=event.commit, mode=mode, idp=event.idp, trace_id=current_trace_id()))
            if mode == "static":
                token, scope = self.static_token or "", ""
            else:
                needed = required_scopes(wf)
                step = "root grant"
                result = self._grant(wf, event.user, needed, ctx, user_token)
                step = "not started"
                if not isinstance(result, OAuthError):  # minted, whatever its recording does
                    root = result.get("access_token")
                granted = self._rooted(run_id, wf, event.user, needed, result)
                if granted is None:
                    return run_id
                token, scope = granted
            # Journaled as any hand-off, before it is running: from then on, until a hop of it
            # claims this generation, a redelivery may take its delivery over and renew it
            # (RunStore.take_over_started), making whatever this start publishes stale.
            generation = HopJournal(self.runs).send(run_id, wf.root_agent)
            if generation is None:  # a new run: nothing can have been handed off yet
                raise RunExists(f"run {run_id}'s first hop was handed off already")
            # running before it is published: a failure here has published nothing
            if not self.runs.mark_running(run_id):  # a redelivery took its delivery over
                raise RunExists(f"run {run_id} was ended before it started: its delivery was "
                                "taken over by a redelivery")
        except InfraBotError as exc:  # anything before the first hop: nothing started
            self._settle(run_id, "failed", f"{step}: {exc.reason}")
            self._unused(run_id, root)
            exc.run_id = run_id  # the caller's refusal names the run it ended
            raise
        except Exception as exc:  # a bug: answered internal_error, as the receiver answers it
            self._settle(run_id, "failed", f"{step}: {InternalError.reason}")
            self._unused(run_id, root)
            raise InternalError("the run could not be started", run_id=run_id) from exc
        try:
            return self._hand_off(run_id, wf, token, scope, mode, generation)
        except InfraBotError:  # ended, or taken over: what it published (if anything) is stale
            self._unused(run_id, root)
            raise

    def _hand_off(self, run_id: str, wf: Workflow, token: str, scope: str, mode: str,
                  generation: int) -> str:
        """Publish the first hop and record it sent; the run id, or raised: the run ended
        (the broker down) or taken over by a redelivery."""
        try:
            self.dispatch(wf.root_agent, run_id, wf.name, token, scope, mode, generation)
        except Exception as exc:  # kombu's OperationalError and friends: the broker is down
            # The publication is in doubt: a sender's retry is safe only once this run is ended
            # (a hop of it that did go out then finds it terminal and does nothing).
            if self._settle(run_id, "failed", f"broker unavailable ({type(exc).__name__})"):
                raise Unavailable("the broker cannot be reached", reason="broker_unavailable",
                                  run_id=run_id) from exc
            # In doubt and not ended here: answered as started (never raise for a retry that
            # would start it twice), unless a redelivery took it over meanwhile. Not recorded
            # sent: while in doubt a redelivery may still take it over.
            self._not_taken_over(run_id, wf.root_agent, generation)
            return run_id
        return self._published(run_id, wf.root_agent, generation)

    def _unused(self, run_id: str, root: str | None) -> None:
        """RFC 7009: revoke the root token of a run this start did not hand off (and so any
        token exchanged from it), as a token asked for ahead and never used is. A revocation
        refused or unanswered is logged: the run is ended or superseded all the same, and any
        copy of its first hop published is stale and does nothing."""
        if root is None:
            return
        try:
            self.auth.revoke(root)
        except InfraBotError as exc:
            get_logger(run_id=run_id).warning("root_token_unrevoked", reason=exc.reason)

    def _not_taken_over(self, run_id: str, agent: str, generation: int) -> None:
        """:class:`RunExists` if a redelivery renewed the first hop's hand-off (it took the
        run's delivery over); a run log that cannot say is taken for no."""
        try:
            renewed = HopJournal(self.runs).renewed(run_id, agent, generation)
        except Unavailable:
            return
        if renewed:
            raise _taken_over(run_id)

    def _published(self, run_id: str, agent: str, generation: int) -> str:
        """The first hop went out: its hand-off recorded ``sent``. :class:`RunExists` if a
        redelivery took the run's delivery over meanwhile (the copy published is stale: its hop
        does nothing); a run log that refuses the record leaves the hand-off ``sending``, which
        its hop claims all the same (the receiver answers 202: never started twice)."""
        try:
            current = HopJournal(self.runs).published(run_id, agent, generation)
        except Unavailable as exc:
            get_logger(run_id=run_id).warning("hand_off_unrecorded", agent=agent,
                                              error=exc.reason)
            return run_id
        if not current:
            raise _taken_over(run_id)
        return run_id

    def _grant(self, wf: Workflow, user: str, needed: list[str], ctx: Context,
               user_token: str | None) -> dict[str, Any] | OAuthError:
        """The root grant's answer, or the authorization server's refusal; an outage is tried
        :data:`ROOT_GRANT_ATTEMPTS` times, then raised."""
        attempt = 1
        while True:
            try:
                return (self.auth.user_root_token(user_token, needed, ctx, wf.root_agent)
                        if user_token is not None
                        else self.auth.root_token(user, needed, ctx, wf.root_agent))
            except OAuthError as exc:
                return exc
            except Unavailable as exc:
                if attempt == ROOT_GRANT_ATTEMPTS:  # nothing started: the sender may redeliver
                    raise Unavailable("the authorization server cannot be reached: the run "
                                      "was not started", reason=exc.reason) from exc
                time.sleep(0.2 * attempt)
                attempt += 1

    def _rooted(self, run_id: str, wf: Workflow, user: str, needed: list[str],
                result: dict[str, Any] | OAuthError) -> tuple[str, str] | None:
        """Record the root grant's answer: the token and scope, or None (the run denied)."""
        if isinstance(result, OAuthError):
            self.runs.add_event(run_id, None, RootDenied(
                needed=needed, error=result.code, reason=result.reason))
            self._finish(run_id, "denied", f"root grant: {result.code} ({result.reason})")
            return None
        held = list(self.directory.users[user].permissions) if user in self.directory.users else []
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

