"""Celery's worker consumer, reconnecting to a lost broker within a second of its return.

Celery's own consumer waits 2 s, 4 s, 6 s ... up to 30 s between attempts to reach a broker it
lost (kombu's ``ensure_connection`` defaults, which Celery does not let a setting change), so a
RabbitMQ node back after 8 s was used again only after 12 s, and one back after 12 s after 20 s;
the chaos benchmark measured 40-56 s from a broker restart to the end of the runs in flight. This
consumer tries every :data:`RECONNECT_INTERVAL` seconds, for ever (a worker waits for its broker;
the systemd units in ``deploy/`` restart what dies), and logs each failed attempt as Celery does.
It is the ``worker_consumer`` of every worker the app starts (``infrabot.celery_app``).
"""

from __future__ import annotations

from typing import Any

from celery.utils.log import get_logger
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.state import maybe_shutdown

RECONNECT_INTERVAL = 1.0  # seconds between attempts to reach a lost broker: a connection each

_log = get_logger("celery.worker.consumer.consumer")


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn: Any) -> Any:
        """Connect ``conn``, retrying every second until the broker answers or the worker is
        told to stop (Celery's ``maybe_shutdown`` between attempts)."""

        def failed(exc: Exception, interval: float) -> None:
            self.broker_connection_retry_attempt += 1
            _log.error("consumer: cannot connect to %s: %s; trying again in %.1f s (attempt %d)",
                       conn.as_uri(), exc, interval, self.broker_connection_retry_attempt)

        conn = conn.ensure_connection(failed, None, interval_start=0,
                                      interval_step=RECONNECT_INTERVAL,
                                      interval_max=RECONNECT_INTERVAL, callback=maybe_shutdown)
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn
