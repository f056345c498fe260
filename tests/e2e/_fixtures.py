"""Fixtures the end-to-end and reliability packages share (imported by both conftests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e._processes import Distributed
from tests._amqp import purged_vhost
from tests._redis import flushed_redis

E2E_REDIS_DB = 14
BROKERS = ("redis", "rabbitmq")


@pytest.fixture
def e2e_redis_url() -> Iterator[str]:
    """Redis db 14, flushed before and after (tests/_redis.py)."""
    with flushed_redis(E2E_REDIS_DB) as url:
        yield url


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Each broker in turn: ``None`` for Redis (the registry's Redis is the broker too), then
    the test RabbitMQ's URL (tests/_amqp.py)."""
    if request.param == "redis":
        yield None
        return
    with purged_vhost() as url:
        yield url


@pytest.fixture
def distributed(tmp_path: Path, e2e_redis_url: str,
                broker_url: str | None) -> Iterator[Distributed]:
    """Nothing running yet: the test starts ``serve`` and the workers it needs; every process
    is stopped by its pid at teardown. Runs once per broker."""
    system = Distributed(tmp_path, e2e_redis_url, broker_url)
    try:
        yield system
    finally:
        system.close()
