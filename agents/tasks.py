"""The agents as Celery tasks: thin shells around :func:`agents.perform_hop`.

One task per agent the directory declares, each on that agent's queue (``agents.infrabot`` on
``infrabot`` ...): an agent exists because ``directory.yaml`` names it. A task takes
identifiers and the hand-off token, performs its hop, enqueues the next agent with the token it
obtained, and returns a small summary that never holds a token (kept nowhere: no task stores a
result). Transient faults retry with exponential backoff and jitter (agents/_retry.py); denials
never retry; anything else raised, in the hop's work or in what follows it (a bug, the soft time
limit), ends the run (in a branch, the branch) failed with its reason. Each hop's task id is
derived from the run.
The hop journal (docs/journal.md) makes a redelivered or retried hop resume where it stopped; a
hand-off is published under a journaled generation, marked sent once published, and published
again only while that is in doubt, so a redelivered hop never enqueues the next agent twice.
A fan-out publishes its branches' hops, each carrying the join's hand-off (``join_token``,
``join_scope``), passed on from agent to agent in its branch. The join goes out when the run
log shows every branch ended: the agent that ends a branch, having recorded its hop done, looks
(:func:`agents._fan_out.join_due`) and, if it is the last, publishes the join under a journaled
generation like any hand-off. No counter outside the run log (docs/graphs.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from kombu.exceptions import OperationalError

from agents._fan_out import join_due
from agents._hop import Delivery, HopOutcome
from agents._perform import STALE, perform_hop
from agents._retry import MAX_RETRIES
from agents._retry import retry_or_fail as _retry_or_fail
from agents._runtime import AgentRuntime, runtime_for, start_dpop_key_renewal
from orchestrator._log import get_logger
from orchestrator.config import Settings
from orchestrator.errors import TransientError
from orchestrator.identity import Directory
from orchestrator.runs import BranchEnded, HopJournal
from orchestrator.tracing import annotate
from orchestrator.workflows import branch_of

QUEUES_CONF = "infrabot_agent_queues"  # the app's agent -> queue map, set by register()
TERMINAL = {"succeeded", "denied", "failed", "expired"}
TIME_LIMIT = "time_limit_exceeded"  # a hop past its soft time limit: the run ends failed


def agent_queues(app: Celery) -> dict[str, str]:
    """The queue of every agent the app's directory declares."""
    queues: dict[str, str] = app.conf[QUEUES_CONF]
    return queues


def task_name(app: Celery, agent: str) -> str:
    return f"agents.{agent_queues(app)[agent]}"


def hop_task_id(app: Celery, run_id: str, agent: str) -> str:
    """``<run>.<queue>``: one task id per agent of a run."""
    return f"{run_id}.{agent_queues(app)[agent]}"


@dataclass(frozen=True)
class JoinHandOff:
    """A fan-out's join hand-off as its branches' hops carry it: the token and its scope (the
    join's agent is the workflow's)."""

    token: str
    scope: str

    def __repr__(self) -> str:  # never shows the token
        return "JoinHandOff(<token>)"


def enqueue(app: Celery, agent: str, run_id: str, workflow: str, token: str, scope: str,
            mode: str, generation: int = 0, join: JoinHandOff | None = None) -> None:
    """Publish ``agent``'s hop; ``generation``: the journaled hand-off it carries (the first
    agent's too, journaled by the orchestrator; 0: none journaled); ``join``: in a branch of a
    fan-out, the join's hand-off, which the branch's last agent publishes."""
    app.send_task(task_name(app, agent),
                  args=[run_id, workflow, token, scope, mode, generation],
                  kwargs={"join_token": join.token, "join_scope": join.scope} if join else None,
                  queue=agent_queues(app)[agent], task_id=hop_task_id(app, run_id, agent))


def publish_fork(app: Celery, run_id: str, workflow: str, mode: str,
                 branches: tuple[Delivery, ...], join: Delivery) -> None:
    """A fan-out: every branch's hop, each carrying the join's hand-off (the join itself goes
    out once every branch has ended: :func:`publish_join`)."""
    carried = JoinHandOff(join.token, join.scope)
    for branch in branches:
        enqueue(app, branch.agent, run_id, workflow, branch.token, branch.scope, mode,
                branch.generation, carried)


def publish_join(app: Celery, rt: AgentRuntime, run_id: str, workflow: str, mode: str,
                 agent: str, join: JoinHandOff) -> None:
    """After ``agent`` ended its branch (its hop recorded done), or a copy of it found it done:
    the join's hop, if every branch of the fan-out has now ended, journaled like any hand-off.
    Of two branches ending at once, each looks after recording its own end, so the later look
    sees both; if both do, the journal's generation lets one join run (the other copy is stale
    or finds the hand-off sent)."""
    target = join_due(rt, run_id, rt.workflows[workflow], agent)
    if target is None:  # a branch still runs: its end publishes the join
        return
    run = rt.runs.get(run_id)
    if run is None or run.status in TERMINAL:  # ended meanwhile (its deadline): no join
        return
    journal = HopJournal(rt.runs)
    generation = journal.send(run_id, target)
    if generation is None:  # published already, by this branch's earlier copy or a sibling
        return
    enqueue(app, target, run_id, workflow, join.token, join.scope, mode, generation)
    journal.sent(run_id, target, generation)


def dispatcher(app: Celery) -> functools.partial[None]:
    """The orchestrator's :class:`~orchestrator.orchestration.Dispatch` for ``app``: a run's
    first hop, published as :func:`enqueue` publishes every hop."""
    return functools.partial(enqueue, app)


def _run_hop(task: Task, app: Celery, settings: Settings, agent: str, run_id: str,
             workflow: str, token: str, scope: str, mode: str, generation: int,
             join: JoinHandOff | None, waited: int) -> dict[str, Any]:
    rt = runtime_for(id(app), settings)
    log = get_logger(run_id=run_id, agent=agent, task_id=task.request.id)
    annotate(run_id=run_id, agent=agent)  # on Celery's span of this task
    try:
        outcome = perform_hop(rt, run_id=run_id, workflow=workflow, agent=agent, token=token,
                              scope=scope, mode=mode, generation=generation)
    except TransientError as exc:
        outcome = _retry_or_fail(task, rt, log, agent, run_id, exc.reason, waited)
    except Exception as exc:  # noqa: BLE001 - a bug, or the time limit: it must end the run
        outcome = _crashed(log, agent, exc, "hop_crashed")
    try:
        _record(task, app, rt, outcome, agent, run_id, workflow, mode, join)
    except (TransientError, OperationalError) as exc:
        # The run log or the broker went away after the hop's work: retried like the work, and
        # the journal makes the next attempt resume here (a hand-off in doubt is published again
        # under a new generation; the older one is then stale; a branch's end, recorded, is
        # looked at again for the join).
        reason = getattr(exc, "reason", "broker_unavailable")
        if _retry_or_fail(task, rt, log, agent, run_id, reason, waited).status == "failed":
            return _unrecorded(log, agent, run_id, outcome, reason)  # the run deadline ends it
    except Exception as exc:  # noqa: BLE001 - the same after the work: end the run (branch)
        outcome = _crashed(log, agent, exc, "hop_follow_up_crashed")
        try:
            _record(task, app, rt, outcome, agent, run_id, workflow, mode, join)
        except Exception as again:  # noqa: BLE001 - the run deadline ends it
            return _unrecorded(log, agent, run_id, outcome, getattr(again, "reason",
                                                                    type(again).__name__))
    log.info("hop_done", status=outcome.status, reason=outcome.reason)
    annotate(decision=outcome.status, reason=outcome.reason)
    return {"run_id": run_id, "agent": agent, "status": outcome.status}


def _crashed(log: Any, agent: str, exc: Exception, event: str) -> HopOutcome:
    """The failed outcome of a hop that raised: its time limit (no traceback: nothing is wrong
    with the code), or a bug (logged with its traceback)."""
    if isinstance(exc, SoftTimeLimitExceeded):
        log.error("hop_time_limit", at=event)
        return HopOutcome("failed", f"{agent}: {TIME_LIMIT}")
    log.exception(event)
    return HopOutcome("failed", f"{agent}: internal error ({type(exc).__name__})")


def _unrecorded(log: Any, agent: str, run_id: str, outcome: HopOutcome,
                reason: str) -> dict[str, Any]:
    log.error("hop_unrecorded", status=outcome.status, reason=reason)
    return {"run_id": run_id, "agent": agent, "status": "unrecorded"}


def _in_branch(rt: AgentRuntime, workflow: str, agent: str) -> bool:
    """Whether ``agent`` is in a branch of a fan-out (False for a workflow this worker lacks)."""
    flow = rt.workflows.get(workflow)
    return flow is not None and branch_of(flow, agent) is not None


def _record(task: Task, app: Celery, rt: AgentRuntime, outcome: HopOutcome, agent: str,
            run_id: str, workflow: str, mode: str, join: JoinHandOff | None) -> None:
    """What follows a hop: publish the hand-off and journal it sent, or end the run (in a
    branch, the branch); then mark the hop done. A hop of a branch (it carries the join's
    hand-off) then looks whether every branch has ended, and if so publishes the join: each
    looks once its own end is recorded, so the last to record sees every end (the one it
    handed off to may have ended first). A copy of a done hop looks again: its first copy may
    have died before publishing; a stale copy carries an older fan-out's join and never does."""
    if outcome.status == "forked":
        if outcome.join is not None:  # None: an earlier attempt published it
            publish_fork(app, run_id, workflow, mode, outcome.branches, outcome.join)
            # All recorded sent at once: a branch claims its hand-off only then (_fan_out.claim)
            if not HopJournal(rt.runs).published_together(
                    run_id, {d.agent: d.generation for d in outcome.branches}):
                return  # renewed by a copy beside it, as for a hand-off (below)
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    elif outcome.status == "handed_off":
        assert outcome.next_agent
        if outcome.next_token is not None:  # None: an earlier attempt published it
            enqueue(app, outcome.next_agent, run_id, workflow, outcome.next_token,
                    outcome.next_scope or "", mode, outcome.generation, join)
            if not HopJournal(rt.runs).published(run_id, outcome.next_agent,
                                                 outcome.generation):
                # A copy of this hop running beside it renewed the hand-off: what this one
                # published is stale. That copy marks the hop done once its own hand-off is
                # recorded; marked now, the branch would look ended before its next agent ran
                # (the join early, that agent's work never done).
                return
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    elif outcome.status == "branch_done":
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    elif outcome.status in TERMINAL and outcome.status != "succeeded" \
            and _in_branch(rt, workflow, agent):
        # A stopped branch: the join ends the run with it, once every branch is done.
        rt.runs.add_event(run_id, agent, BranchEnded(status=outcome.status,
                                                     reason=outcome.reason))
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    elif outcome.status in TERMINAL:
        # The status first: a copy of this hop redelivered after it finds the run terminal.
        rt.runs.finish(run_id, outcome.status, outcome.reason, agent=agent)
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    if join is not None and outcome.reason != STALE and workflow in rt.workflows:
        publish_join(app, rt, run_id, workflow, mode, agent, join)


WAKE_TASK = "agents.wake"


def _wake() -> None:
    """Does nothing: sent to an embedded worker that is stopping, so its blocking poll of the
    broker returns now instead of after its two-second timeout."""


def register(app: Celery, settings: Settings, directory: Directory) -> None:
    """Register one task per agent the directory declares, each routed to its queue."""
    app.conf[QUEUES_CONF] = directory.queues()
    # Routed by task_routes: the task's own ``queue`` attribute is deprecated (Celery warns at
    # registration, CDeprecationWarning, an error under warnings-as-errors; gone in 6.0).
    app.conf.task_routes = {task_name(app, agent): {"queue": queue}
                            for agent, queue in agent_queues(app).items()}
    app.task(_wake, name=WAKE_TASK, shared=False, ignore_result=True)
    # A worker process registers its agents' DPoP keys as it starts (embedded: no-op, the
    # runtime registers them at its first exchange).
    worker_ready.connect(lambda **_: start_dpop_key_renewal(settings), weak=False,
                         dispatch_uid="agents.register_dpop_keys")
    for agent, queue in agent_queues(app).items():
        def hop(self: Task, run_id: str, workflow: str, token: str, scope: str,
                mode: str = "delegated", generation: int = 0, join_token: str | None = None,
                join_scope: str = "", waited: int = 0, _agent: str = agent) -> dict[str, Any]:
            # waited: how many of the retries so far were waits, not faults (agents/_retry.py)
            join = None if join_token is None else JoinHandOff(join_token, join_scope)
            return _run_hop(self, app, settings, _agent, run_id, workflow, token, scope, mode,
                            generation, join, waited)

        # shared=False: a shared task would be added to every Celery app later finalized in
        # this process, bound to this app and these settings (a second embedded system would
        # run its hops with the first one's runtime).
        app.task(hop, name=f"agents.{queue}", bind=True, shared=False, acks_late=True,
                 reject_on_worker_lost=True, max_retries=MAX_RETRIES, typing=False)
