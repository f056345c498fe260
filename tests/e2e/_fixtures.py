"""Fixtures the end-to-end and reliability packages share (imported by both conftests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e._processes import Distributed
from tests._redis import flushed_redis

E2E_REDIS_DB = 14
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def e2e_redis_url() -> Iterator[str]:
    """Redis db 14, flushed before and after (tests/_redis.py)."""
    with flushed_redis(E2E_REDIS_DB) as url:
        yield url


@pytest.fixture
def distributed(tmp_path: Path, e2e_redis_url: str) -> Iterator[Distributed]:
    """Nothing running yet: the test starts ``serve`` and the workers it needs; every process
    is stopped by its pid at teardown."""
    system = Distributed(tmp_path, e2e_redis_url)
    try:
        yield system
    finally:
        system.close()
