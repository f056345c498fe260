"""Fixtures shared by every test package: the shipped directory and a real Redis; under
pytest-xdist, each worker's own services (tests/_workers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.transport import memory as kombu_memory
from opentelemetry import context as otel_context

from orchestrator.identity import Directory
from orchestrator.workflows import load_directory
from tests import _workers
from tests._redis import DEFAULT_TEST_REDIS_URL, TEST_REDIS_DB, flushed_redis

# pytester runs the shipped pytest plugin (infrabot.testing) in a test's own pytest run.
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
DIRECTORY_FILE = REPO / "workflows" / "directory.yaml"
WORKER_SERVICES = pytest.StashKey[_workers.WorkerServices]()
CONTROLLER_ENV = pytest.StashKey[dict[str, str | None]]()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist: in the controller, the environment its workers are to run in; in a
    worker, that environment and the worker's own Redis and RabbitMQ vhost
    (tests/_workers.py)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        _workers.restore_environment(workerinput[_workers.ENVIRONMENT])
        config.stash[WORKER_SERVICES] = _workers.start(worker)
    elif getattr(config.option, "numprocesses", None):
        config.stash[CONTROLLER_ENV] = _workers.controller_environment()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's hook, in the controller, for each worker it starts: the environment to restore."""
    node.workerinput[_workers.ENVIRONMENT] = node.config.stash[CONTROLLER_ENV]


def pytest_unconfigure(config: pytest.Config) -> None:
    services = config.stash.get(WORKER_SERVICES, None)
    if services is not None:
        services.stop()


@pytest.fixture(autouse=True)
def _own_trace_context() -> Iterator[None]:
    """Each test starts from an empty OpenTelemetry context, and whatever it leaves current in
    this thread (a span of a Celery publish that failed, which the instrumentation never
    detaches) goes with it, not into the next test's traces."""
    token = otel_context.attach(otel_context.Context())
    yield
    otel_context.detach(token)


@pytest.fixture(autouse=True)
def _empty_memory_broker() -> Iterator[None]:
    """kombu's ``memory://`` broker keeps its queues in the process (class attributes of its
    Channel), not in the connection: a message one test's system left queued (a hop it never
    performed) would be taken by the next test's worker in this process. Emptied before and
    after each test."""
    _clear_memory_broker()
    yield
    _clear_memory_broker()


def _clear_memory_broker() -> None:
    kombu_memory.Channel.queues.clear()
    kombu_memory.Channel.events.clear()


@pytest.fixture(scope="session")
def directory() -> Directory:
    """The shipped ``workflows/directory.yaml``."""
    return load_directory(DIRECTORY_FILE)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis (db 15 only), flushed before and after the test; see tests/_redis.py."""
    url = os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    if not url.rstrip("/").endswith(f"/{TEST_REDIS_DB}"):
        pytest.fail(f"INFRABOT_TEST_REDIS_URL must name db {TEST_REDIS_DB} (it is flushed)")
    with flushed_redis(TEST_REDIS_DB) as flushed:
        yield flushed
