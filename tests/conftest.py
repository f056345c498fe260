"""Fixtures shared by every test package: the shipped directory and a real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import context as otel_context

from orchestrator.identity import Directory, load_directory
from tests._redis import DEFAULT_TEST_REDIS_URL, flushed_redis

# pytester runs the shipped pytest plugin (infrabot.testing) in a test's own pytest run.
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
DIRECTORY_FILE = REPO / "workflows" / "directory.yaml"
TEST_REDIS_DB = 15


@pytest.fixture(autouse=True)
def _own_trace_context() -> Iterator[None]:
    """Each test starts from an empty OpenTelemetry context, and whatever it leaves current in
    this thread (a span of a Celery publish that failed, which the instrumentation never
    detaches) goes with it, not into the next test's traces."""
    token = otel_context.attach(otel_context.Context())
    yield
    otel_context.detach(token)


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
