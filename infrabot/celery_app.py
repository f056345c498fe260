"""The Celery app, built by a factory from settings (DESIGN.md section 7).

One queue per agent, JSON only, late acknowledgement with rejection on worker loss, prefetch 1.
The broker is RabbitMQ (``amqp://``, production: durable queues, persistent messages, a lost
worker's hop redelivered as soon as its connection drops) or Redis (``redis://``: a lost hop comes
back after the visibility timeout, swept for every few seconds), or the in-memory broker of the
embedded mode. Tasks themselves live in :mod:`agents.tasks`; they are registered on the app the
factory returns. docs/reliability.md explains the choices.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from agents.tasks import register
from infrabot._redis_broker import TRANSPORT as REDIS_TRANSPORT
from orchestrator.audit import contains_raw_jwt
from orchestrator.config import Settings
from orchestrator.identity import Directory
from orchestrator.workflows import load_directory

# Redis broker: every worker sweeps for messages unacknowledged past the visibility timeout
# (a worker lost mid-hop) every RESTORE_INTERVAL seconds; kombu's defaults (every 10 s, then only
# one call in 10) made that up to 100 s after the timeout.
RESTORE_INTERVAL = 5
# The sweep's lock lives this long if its holder dies holding it (kombu's default, 300 s, would
# stop every sweep for five minutes after a worker killed mid-sweep); the sweep itself is safe to
# run twice at once (infrabot/_redis_broker.py), the lock only saves repeated work.
SWEEP_LOCK_SECONDS = 10


# Publishing: nine tries, the last 6.5 s after the first (kombu sleeps 0, 0.5, then 1 s between
# tries; a connection refused fails at once): a broker restart here takes 4-10 s, and the
# webhook's sender waits 10 s for an answer (GitHub's timeout).
PUBLISH_RETRY_POLICY = {"max_retries": 8, "interval_start": 0, "interval_step": 0.5,
                        "interval_max": 1.0}


def _broker_config(settings: Settings, queues: list[str]) -> dict[str, Any]:
    kind = settings.broker_kind
    if kind == "memory":
        return {"broker_transport_options": {"polling_interval": 0.01}}
    if kind == "amqp":
        # The agent queues are durable (kombu's default for the queues Celery declares) and the
        # messages persistent, so both survive a broker restart; publisher confirms make a
        # hand-off count as sent only once the broker has it. With acks_late and prefetch 1 an
        # unacknowledged hop goes back to its queue the moment its worker's connection drops
        # (the heartbeat notices a silent loss within two intervals).
        tls = settings.broker_tls  # amqps://: the server's certificate and name verified
        return {"broker_heartbeat": 10, "task_default_delivery_mode": "persistent",
                **({"broker_use_ssl": tls} if tls else {}),
                "broker_transport_options": {"confirm_publish": True}}
    # Our transport (infrabot/_redis_broker.py) for redis:// and rediss:// alike: given by name,
    # it no longer learns TLS from the scheme, so rediss:// gets its TLS options set here.
    tls = settings.broker_tls
    return {"broker_transport": REDIS_TRANSPORT,
            **({"broker_use_ssl": tls} if tls else {}),
            "broker_transport_options": {
                "visibility_timeout": settings.visibility_timeout_seconds,
                "unacked_restore_interval": RESTORE_INTERVAL,
                "unacked_restore_throttle": 1,
                "unacked_mutex_expire": SWEEP_LOCK_SECONDS,
                # hops recorded as unacknowledged from their publication: never lost between
                # a worker's BRPOP and its record (infrabot/_redis_broker.py)
                "tracked_queues": sorted(queues),
                "socket_timeout": 5, "socket_connect_timeout": 5}}


def celery_config(settings: Settings, directory: Directory) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_connection_url,
        **_broker_config(settings, list(directory.queues().values())),
        # No result backend: a hop's summary is kept nowhere; a fan-out's join goes out when
        # the run log shows every branch ended (agents/tasks.py), not on a count kept elsewhere.
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # The visibility timeout (settings) exceeds it by the longest retry countdown and more,
        # so a message is never redelivered while a live worker still holds it.
        "task_time_limit": settings.hop_time_limit_seconds,
        "task_soft_time_limit": settings.hop_time_limit_seconds - 5,
        "task_default_queue": next(iter(directory.queues().values()), "infrabot"),
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,  # a worker waits for its broker for ever
        # ... trying every second (Celery's own consumer backs off to 30 s between attempts)
        "worker_consumer": "infrabot._consumer:Consumer",
        # A publish (the first hop from serve, a hand-off from a hop) rides out a broker blip of
        # a few seconds instead of Celery's 0.6 s; a longer outage fails it as before: serve
        # answers 503 broker_unavailable, a hop is retried.
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "task_track_started": False,
        "worker_send_task_events": False,
    }


# A hop's hand-off token: the third of its arguments, or its ``token`` keyword
# (agents.tasks: ``run_id, workflow, token, scope, mode, generation``); in a branch, the join's
# hand-off token it carries, keyword ``join_token``.
TOKEN_ARG = 2
TOKEN_KEYWORDS = frozenset({"token", "join_token"})
_REDACTED = "<token>"


def _shown(value: Any, token: bool) -> Any:
    return _REDACTED if token or (isinstance(value, str) and contains_raw_jwt(value)) else value


def redacted(values: Any) -> str:
    """``repr`` of a task's arguments with its tokens replaced by ``'<token>'``: the tokens'
    slots (``TOKEN_ARG``, ``TOKEN_KEYWORDS``) whatever they hold (a static mode token is an opaque
    string), and any other value shaped like a JWT."""
    if isinstance(values, dict):
        return repr({k: _shown(v, k in TOKEN_KEYWORDS) for k, v in values.items()})
    return repr([_shown(v, i == TOKEN_ARG) for i, v in enumerate(values or ())])


@before_task_publish.connect(weak=False)
def _no_token_in_argsrepr(body: Any = None, headers: dict[str, Any] | None = None,
                          **_: Any) -> None:
    """Celery logs a task by its ``argsrepr`` and ``kwargsrepr`` headers (a task received,
    retried, or one it failed to cancel after losing its broker), which it fills with the
    arguments' ``repr``; a hop's arguments carry its token. Every publication (first hop,
    hand-off, fan-out, retry) goes out with the token replaced."""
    if headers is None or not isinstance(body, (list, tuple)) or len(body) < 2:
        return
    headers["argsrepr"], headers["kwargsrepr"] = redacted(body[0]), redacted(body[1])


def create_celery(settings: Settings, directory: Directory | None = None) -> Celery:
    """A Celery app for these settings with a task for every agent the directory (default:
    the workflows folder's ``directory.yaml``) declares."""
    if directory is None:
        directory = load_directory(settings.workflows_dir / "directory.yaml")
    app = Celery("infrabot", set_as_current=False)
    app.conf.update(celery_config(settings, directory))
    register(app, settings, directory)
    return app
