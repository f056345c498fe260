"""A running ``infrabot serve`` per test module that asks for ``system``: its own temporary
state directory (``state``) and the clean environment naming it (``env``); a client of the
test's Redis (``redis_client``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _cli import clean_env, serving


@pytest.fixture(scope="module")
def state(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "state"


@pytest.fixture(scope="module")
def env(state: Path) -> dict[str, str]:
    return clean_env(INFRABOT_STATE_DIR=str(state))


@pytest.fixture(scope="module")
def system(state: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    state.mkdir(parents=True)
    with serving(state, env) as urls:
        yield urls
    assert not (state / "endpoints.json").exists(), "a stopped serve left endpoints.json"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, socket_timeout=1.0) as client:
        yield client
