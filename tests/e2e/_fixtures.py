"""Fixtures the end-to-end and reliability packages share (imported by both conftests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from e2e._processes import Distributed

E2E_REDIS_DB = 14
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def e2e_redis_location() -> str:
    """The test Redis of ``INFRABOT_TEST_REDIS_URL`` (tests/conftest.py), but db 14: the
    distributed tests' processes share it, and it is flushed before each test."""
    base = urlsplit(os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL))
    return urlunsplit((base.scheme, base.netloc, f"/{E2E_REDIS_DB}", "", ""))


@pytest.fixture
def e2e_redis_url() -> Iterator[str]:
    """Redis db 14, flushed. Skips with a visible reason when Redis does not answer, except on
    CI (``CI=true``), where a missing Redis fails the run (the convention of tests/conftest.py)."""
    url = e2e_redis_location()
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        try:
            client.ping()
        except (redis.RedisError, OSError):
            if os.environ.get("CI") == "true":
                pytest.fail(f"no Redis at {url}: CI must provide one")
            pytest.skip(f"no Redis at {url}: start redis-server")
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def distributed(tmp_path: Path, e2e_redis_url: str) -> Iterator[Distributed]:
    """Nothing running yet: the test starts ``serve`` and the workers it needs; every process
    is stopped by its pid at teardown."""
    system = Distributed(tmp_path, e2e_redis_url)
    try:
        yield system
    finally:
        system.close()
