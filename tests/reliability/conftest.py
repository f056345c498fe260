"""Reliability tests: killed workers and flaky services, with the real chain (see tests/e2e);
Redis restarted, the authorization server down, load, revocation timing and fail-closed checks
(fixtures in ``_system``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# See tests/e2e/conftest.py: the real `mock_services`, not the tests/mock_services directory.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from e2e._fixtures import broker_url, distributed, e2e_redis_url

from reliability._system import faulty, large, own_redis, reliability_redis_url

__all__ = ["broker_url", "distributed", "e2e_redis_url", "faulty", "large", "own_redis",
           "reliability_redis_url"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-large", action="store_true", default=False,
                     dest="reliability_large",
                     help="tests/reliability: the larger load and fault runs (several minutes); "
                          "also INFRABOT_RELIABILITY_LARGE=1")
