"""The floor of the end-to-end benchmark: the post-deploy chain's three hops as Celery tasks that
do nothing but hand off, on their own Celery app with the project's Celery configuration and the
same queues (``infrabot`` → ``argocd`` → ``cleanup``).

Each hop takes the same arguments as an agent hop (run id, workflow, a token-sized string, scope,
mode) and sends the next; the last one pushes ``[run_id, finished_at]`` onto a Redis list the
benchmark waits on. Run it with ``celery -A bench.bare_chain worker -Q infrabot,argocd,cleanup``
and the ``INFRABOT_*`` environment of the run (broker and Redis URL).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from celery import Celery

from infrabot.celery_app import celery_config
from orchestrator.config import Settings
from orchestrator.workflows import load_directory

DONE_LIST = "bench:bare:done"
HOPS = (("bare.infrabot", "infrabot"), ("bare.argocd", "argocd"), ("bare.cleanup", "cleanup"))
PLACEHOLDER_TOKEN = "x" * 1000  # a delegated hand-off token is about this long


def create_app(settings: Settings) -> Celery:
    app = Celery("bench-bare", set_as_current=False)
    app.conf.update(celery_config(settings, load_directory(settings.workflows_dir
                                                           / "directory.yaml")))
    app.conf.task_routes = {name: {"queue": queue} for name, queue in HOPS}
    done: dict[str, Any] = {}

    def results() -> Any:
        if "client" not in done:
            done["client"] = redis.Redis.from_url(settings.redis_url or settings.broker_url)
        return done["client"]

    for index, (name, _queue) in enumerate(HOPS):
        def hop(run_id: str, workflow: str, token: str, scope: str, mode: str = "bare",
                _next: int = index + 1) -> dict[str, str]:
            if _next < len(HOPS):
                app.send_task(HOPS[_next][0], args=[run_id, workflow, token, scope, mode],
                              queue=HOPS[_next][1], task_id=f"{run_id}.{HOPS[_next][1]}")
            else:
                results().rpush(DONE_LIST, json.dumps([run_id, time.time()]))
            return {"run_id": run_id, "status": "handed_off" if _next < len(HOPS) else "done"}

        app.task(hop, name=name, shared=False, acks_late=True, reject_on_worker_lost=True,
                 typing=False)
    return app


def start(app: Celery, run_id: str) -> float:
    """Send the first hop; returns the send time (epoch seconds)."""
    sent = time.time()
    app.send_task(HOPS[0][0], args=[run_id, "post-deploy", PLACEHOLDER_TOKEN, "", "bare"],
                  queue=HOPS[0][1], task_id=f"{run_id}.{HOPS[0][1]}")
    return sent


def wait(client: redis.Redis, count: int, timeout: float) -> dict[str, float]:
    """``count`` finished chains: run id → finish time; TimeoutError past ``timeout``."""
    finished: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{count - len(finished)} bare chains unfinished")
        item = client.blpop([DONE_LIST], timeout=max(0.1, min(left, 1.0)))
        if item is not None:
            run_id, at = json.loads(item[1])
            finished[run_id] = at
    return finished


app = create_app(Settings())
