"""The Celery app, built by a factory from settings (DESIGN.md section 7).

One queue per agent, JSON only, late acknowledgement with rejection on worker loss, prefetch 1,
and one visibility timeout applied everywhere the Redis transport reads it. Tasks themselves live
in :mod:`agents.tasks`; they are registered on the app the factory returns.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from orchestrator.config import Settings

# The visibility timeout (settings) must exceed any task's run (this time limit) plus the longest
# retry countdown, so a message is never redelivered while a live worker still holds it.
TASK_TIME_LIMIT = 30


def celery_config(settings: Settings) -> dict[str, Any]:
    visibility = settings.visibility_timeout_seconds  # validated > TASK_TIME_LIMIT + 10
    transport: dict[str, Any] = {"visibility_timeout": visibility}
    if settings.broker_url.startswith("memory://"):
        transport["polling_interval"] = 0.01
    else:
        transport.update(socket_timeout=5, socket_connect_timeout=5)
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "result_backend": None,
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": TASK_TIME_LIMIT,
        "task_soft_time_limit": TASK_TIME_LIMIT - 5,
        "task_default_queue": "infrabot",
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "task_track_started": False,
        "worker_send_task_events": False,
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery app for these settings with the agent tasks registered."""
    from agents.tasks import register

    app = Celery("infrabot", set_as_current=False)
    app.conf.update(celery_config(settings))
    register(app, settings)
    return app
