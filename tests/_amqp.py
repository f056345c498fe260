"""The one way tests get a real RabbitMQ: a virtual host of their own, its agent queues deleted
before and after the test (as tests/_redis.py flushes a Redis db).

``INFRABOT_TEST_AMQP_URL`` names it (default ``amqp://guest:guest@127.0.0.1:5672/infrabot-test``;
create the vhost with ``rabbitmqctl add_vhost infrabot-test`` and ``rabbitmqctl set_permissions
-p infrabot-test guest '.*' '.*' '.*'``; .ci/run makes a fresh vhost of its own for each run and
deletes it after). Skips with a visible reason when
RabbitMQ does not answer or the vhost is missing, except on CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from kombu import Connection
from kombu.exceptions import OperationalError

DEFAULT_TEST_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/infrabot-test"
AGENT_QUEUES = ("infrabot", "argocd", "scanner", "notifier", "rollback", "cleanup",
                "commenter")  # the last: a test's own agent (tests/e2e/_branch_chain.py)


def _delete_agent_queues(connection: Connection) -> None:
    channel = connection.channel()
    try:
        for queue in AGENT_QUEUES:
            channel.queue_delete(queue)
    finally:
        channel.close()


def connected(connection: Connection) -> Exception | None:
    """Connect ``connection`` (one try): None once it answers, else why not."""
    try:
        connection.ensure_connection(max_retries=1)
    except (OSError, OperationalError, *connection.connection_errors) as exc:
        return exc
    return None


@contextlib.contextmanager
def purged_vhost() -> Iterator[str]:
    """The test RabbitMQ's URL, with no agent queue (nor message) left from an earlier test."""
    url = os.environ.get("INFRABOT_TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)
    connection = Connection(url, connect_timeout=2)
    try:
        if (exc := connected(connection)) is not None:
            reason = f"no RabbitMQ vhost at {connection.as_uri()} ({exc})"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}: CI must provide one")
            pytest.skip(f"{reason}: start rabbitmq-server and add the vhost (tests/_amqp.py)")
        _delete_agent_queues(connection)
        yield url
        _delete_agent_queues(connection)
    finally:
        connection.release()
