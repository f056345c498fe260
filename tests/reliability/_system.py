"""The distributed mode under faults: :class:`FaultyDistributed` (``infrabot serve`` and workers
with extra settings), the Redis fixtures of this package, and the size switch.

* ``reliability_redis_url``: the test Redis of ``INFRABOT_TEST_REDIS_URL`` but db 11, flushed
  before and after (tests/conftest.py's skip-or-fail convention).
* ``own_redis``: a ``redis-server`` of the test's own on a spare port (see ``tests/_redis_server.py``),
  for the tests that stop and restart it.
* ``large``: True with ``--reliability-large`` (or ``INFRABOT_RELIABILITY_LARGE=1``): the
  larger versions of the load and fault runs; the default run stays small.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e._processes import Distributed

from tests._redis import flushed_redis
from tests._redis_server import RedisServer

RELIABILITY_REDIS_DB = 11


@pytest.fixture
def reliability_redis_url() -> Iterator[str]:
    """Redis db 11, flushed before and after (tests/_redis.py)."""
    with flushed_redis(RELIABILITY_REDIS_DB) as url:
        yield url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A running ``redis-server`` of this test's own; stopped by its pid at teardown."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def large(request: pytest.FixtureRequest) -> bool:
    option = bool(request.config.getoption("reliability_large", default=False))
    return option or os.environ.get("INFRABOT_RELIABILITY_LARGE") == "1"


@dataclass
class FaultyDistributed(Distributed):
    """:class:`~e2e._processes.Distributed` whose processes all get ``extra_env`` too."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.extra_env, **extra})


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[FaultyDistributed]:
    """Nothing running yet; the test sets ``redis_url`` and ``extra_env``, then starts
    ``serve`` and workers. Every process is stopped by its pid at teardown."""
    system = FaultyDistributed(tmp_path, "redis://unset")
    try:
        yield system
    finally:
        system.close()
