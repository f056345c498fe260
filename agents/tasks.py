"""The agents as Celery tasks: thin shells around :func:`agents.perform_hop`.

One task per agent, each on its own queue (``agents.infrabot`` on ``infrabot`` ...). A task takes
identifiers and the hand-off token, performs its hop, enqueues the next agent with the token it
obtained, and returns a small summary that never holds a token. Transient faults retry with
exponential backoff and jitter; denials never retry. Each hop's task id is derived from the run.
The hop journal (docs/journal.md) makes a redelivered or retried hop resume where it stopped; a
hand-off is published under a journaled generation, marked sent once published, and published
again only while that is in doubt, so a redelivered hop never enqueues the next agent twice.
"""

from __future__ import annotations

import random
from typing import Any

from celery import Celery, Task

from agents._hop import HopOutcome, perform_hop
from agents._runtime import runtime_for
from orchestrator._log import get_logger
from orchestrator.config import Settings
from orchestrator.errors import TransientError
from orchestrator.runs import HopJournal

AGENT_QUEUES = {"agent:infrabot": "infrabot", "agent:argocd": "argocd", "agent:cleanup": "cleanup"}
MAX_RETRIES = 4
TERMINAL = {"succeeded", "denied", "failed", "expired"}


def task_name(agent: str) -> str:
    return f"agents.{AGENT_QUEUES[agent]}"


def hop_task_id(run_id: str, agent: str) -> str:
    return f"{run_id}.{AGENT_QUEUES[agent]}"


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter: ~0.2 s, 0.4 s, 0.8 s ... capped at 5 s."""
    return float(min(5.0, 0.2 * 2**retries) * random.uniform(0.5, 1.0))  # noqa: S311


def enqueue(app: Celery, agent: str, run_id: str, workflow: str, token: str, scope: str,
            mode: str, generation: int = 0) -> None:
    """Publish ``agent``'s hop; ``generation``: the journaled hand-off it carries (0 for the
    first agent of a run, enqueued once by the orchestrator)."""
    app.send_task(task_name(agent), args=[run_id, workflow, token, scope, mode, generation],
                  queue=AGENT_QUEUES[agent], task_id=hop_task_id(run_id, agent))


def _run_hop(task: Task, app: Celery, settings: Settings, agent: str, run_id: str,
             workflow: str, token: str, scope: str, mode: str,
             generation: int) -> dict[str, Any]:
    rt = runtime_for(id(app), settings)
    log = get_logger(run_id=run_id, agent=agent, task_id=task.request.id)
    try:
        outcome = perform_hop(rt, run_id=run_id, workflow=workflow, agent=agent, token=token,
                              scope=scope, mode=mode, generation=generation)
    except TransientError as exc:
        attempt = task.request.retries + 1
        if task.request.retries >= MAX_RETRIES:
            outcome = HopOutcome("failed", f"{agent}: {exc.reason} after {attempt} attempts")
        else:
            delay = backoff(task.request.retries)
            rt.runs.add_event(run_id, "retrying", agent, {"reason": exc.reason,
                                                          "attempt": attempt,
                                                          "in_seconds": round(delay, 2)})
            log.info("hop_retrying", reason=exc.reason, attempt=attempt)
            raise task.retry(countdown=delay, max_retries=MAX_RETRIES) from None
    except Exception as exc:  # noqa: BLE001 - a bug must still end the run, never strand it
        log.exception("hop_crashed")
        outcome = HopOutcome("failed", f"{agent}: internal error ({type(exc).__name__})")
    if outcome.status == "handed_off":
        assert outcome.next_agent
        if outcome.next_token is not None:  # None: an earlier attempt published it
            enqueue(app, outcome.next_agent, run_id, workflow, outcome.next_token,
                    outcome.next_scope or "", mode, outcome.generation)
            HopJournal(rt.runs).sent(run_id, outcome.next_agent, outcome.generation)
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    elif outcome.status in TERMINAL:
        # The status first: a copy of this hop redelivered after it finds the run terminal.
        rt.runs.finish(run_id, outcome.status, outcome.reason, agent=agent)
        rt.runs.mark_hop_done(run_id, agent, task.request.id)
    log.info("hop_done", status=outcome.status, reason=outcome.reason)
    return {"run_id": run_id, "agent": agent, "status": outcome.status}


WAKE_TASK = "agents.wake"


def _wake() -> None:
    """Does nothing: sent to an embedded worker that is stopping, so its blocking poll of the
    broker returns now instead of after its two-second timeout."""


def register(app: Celery, settings: Settings) -> None:
    """Register one task per agent on ``app``, each routed to its agent's queue."""
    # Routed by task_routes: the task's own ``queue`` attribute is deprecated (Celery warns at
    # registration, CDeprecationWarning, an error under warnings-as-errors; gone in 6.0).
    app.conf.task_routes = {task_name(agent): {"queue": queue}
                            for agent, queue in AGENT_QUEUES.items()}
    app.task(_wake, name=WAKE_TASK, shared=False, ignore_result=True)
    for agent, queue in AGENT_QUEUES.items():
        def hop(self: Task, run_id: str, workflow: str, token: str, scope: str,
                mode: str = "delegated", generation: int = 0,
                _agent: str = agent) -> dict[str, Any]:
            return _run_hop(self, app, settings, _agent, run_id, workflow, token, scope, mode,
                            generation)

        # shared=False: a shared task would be added to every Celery app later finalized in
        # this process, bound to this app and these settings (a second embedded system would
        # run its hops with the first one's runtime).
        app.task(hop, name=f"agents.{queue}", bind=True, shared=False, acks_late=True,
                 reject_on_worker_lost=True, max_retries=MAX_RETRIES, typing=False)
