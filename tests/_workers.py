"""What each pytest-xdist worker (``pytest -n 2``) has to itself, so workers running side by side
never flush, purge or delete each other's data. Started by tests/conftest.py when the worker
starts, stopped when it ends; a plain ``pytest`` run (no xdist worker) changes nothing.

* Redis: a ``redis-server`` of the worker's own on a spare loopback port
  (tests/_redis_server.py, nothing kept on disk). ``INFRABOT_TEST_REDIS_URL`` (db 15) and
  ``INFRABOT_BENCH_REDIS_URL`` (db 12) name it for the worker's whole run, so every package's
  database (tests/_redis.py) is on it, not on the machine's shared Redis.
* RabbitMQ: the vhost of ``INFRABOT_TEST_AMQP_URL`` with the worker's id appended
  (``infrabot-test-gw0``), so one worker's purge of the agent queues (tests/_amqp.py) never
  takes another's messages. Made with ``rabbitmqctl`` when it is missing, and then deleted at
  the end; when it cannot be made, the RabbitMQ tests say so (tests/_amqp.py).
* PostgreSQL: nothing; every test has a schema of its own (tests/_postgres.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from kombu import Connection

from tests._amqp import DEFAULT_TEST_AMQP_URL, connected
from tests._redis import TEST_REDIS_DB
from tests._redis_server import RedisServer

BENCH_REDIS_DB = 12  # bench/run.py's default database
RABBITMQCTL_TIMEOUT = 60.0

# What a worker's start changes in its environment before any test runs, put back as the
# controller has it: readline (imported with pdb) sets COLUMNS and LINES in a worker, which the
# CLI would take for a terminal's width.
ENVIRONMENT = "infrabot_environment"
RESTORED = ("COLUMNS", "LINES")


def controller_environment() -> dict[str, str | None]:
    """In the xdist controller: the variables its workers restore (:func:`restore_environment`)."""
    return {name: os.environ.get(name) for name in RESTORED}


def restore_environment(values: dict[str, str | None]) -> None:
    """In a worker: each of :data:`RESTORED` as the controller had it (unset if it had none),
    so the worker's tests and the processes they start see the controller's environment."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class WorkerServices:
    """A worker's own Redis server and, when it made one, its RabbitMQ vhost."""

    redis: RedisServer
    made_vhost: str | None = None

    def stop(self) -> None:
        self.redis.stop()
        shutil.rmtree(self.redis.root, ignore_errors=True)
        if self.made_vhost is not None:
            _rabbitmqctl("delete_vhost", self.made_vhost)


def start(worker: str) -> WorkerServices:
    """Start ``worker``'s services and point the test settings at them (for this process and
    every process its tests start)."""
    if shutil.which("redis-server") is None:
        raise pytest.UsageError("`pytest -n` gives each worker a redis-server of its own: "
                                "install redis-server, or run plain `pytest`")
    server = RedisServer(Path(tempfile.mkdtemp(prefix=f"infrabot-test-{worker}-")))
    server.start()
    os.environ["INFRABOT_TEST_REDIS_URL"] = server.url(TEST_REDIS_DB)
    os.environ["INFRABOT_BENCH_REDIS_URL"] = server.url(BENCH_REDIS_DB)
    url = os.environ.get("INFRABOT_TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)
    own_url, vhost, user = _worker_vhost(url, worker)
    os.environ["INFRABOT_TEST_AMQP_URL"] = own_url
    made = vhost if not _vhost_answers(own_url) and _make_vhost(vhost, user) else None
    return WorkerServices(server, made)


def _worker_vhost(url: str, worker: str) -> tuple[str, str, str]:
    """``url`` with ``worker`` appended to its vhost; the new vhost's name; the URL's user."""
    parts = urlsplit(url)
    vhost = Connection(url).virtual_host
    own = f"{vhost.strip('/') or 'root'}-{worker}"
    return (urlunsplit((parts.scheme, parts.netloc, "/" + quote(own, safe=""), parts.query, "")),
            own, parts.username or "guest")


def _vhost_answers(url: str) -> bool:
    connection = Connection(url, connect_timeout=2)
    try:
        return connected(connection) is None
    finally:
        connection.release()


def _make_vhost(vhost: str, user: str) -> bool:
    """``rabbitmqctl add_vhost`` and full permissions for ``user``; False when RabbitMQ's CLI
    is missing or refuses (the RabbitMQ tests then report the missing vhost)."""
    return (shutil.which("rabbitmqctl") is not None
            and _rabbitmqctl("add_vhost", vhost)
            and _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"))


def _rabbitmqctl(*argv: str) -> bool:
    try:
        result = subprocess.run(["rabbitmqctl", "-q", *argv], stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=RABBITMQCTL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
