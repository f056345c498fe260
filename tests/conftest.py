"""Fixtures shared by every test package: the shipped directory and a real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.identity import Directory, load_directory

REPO = Path(__file__).resolve().parent.parent
DIRECTORY_FILE = REPO / "workflows" / "directory.yaml"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
TEST_REDIS_DB = 15


@pytest.fixture(scope="session")
def directory() -> Directory:
    """The shipped ``workflows/directory.yaml``."""
    return load_directory(DIRECTORY_FILE)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis (db 15 only), flushed before the test.

    Skips with a visible reason when Redis does not answer, except on CI (``CI=true``), where a
    missing Redis fails the run instead of silently skipping the distributed-mode tests.
    """
    url = os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        if int(db) != TEST_REDIS_DB:
            pytest.fail(f"INFRABOT_TEST_REDIS_URL must name db {TEST_REDIS_DB} (it is flushed)")
        try:
            client.ping()
        except (redis.RedisError, OSError):
            if os.environ.get("CI") == "true":
                pytest.fail(f"no Redis at {url}: CI must provide one")
            pytest.skip(f"no Redis at {url}: start redis-server")
        client.flushdb()
        yield url
    finally:
        client.close()
