"""Issue 19: client and grant assertions may live up to ``assertion_max_lifetime_seconds`` (one
hour by default, the ecosystem's convention), and each ``jti`` is held for replay detection
until the assertion expires, on both registries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator.identity import MemoryRevocationStore

from .conftest import (
    ARGOCD,
    INFRABOT,
    ORCH,
    AuthServer,
    refusal,
    serve,
    unverified_claims,
)

HOUR = 3600


class Clock:
    """The registry's clock, moved by hand (the server still reads the real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def shifted(tmp_path: Path) -> Iterator[tuple[AuthServer, Clock]]:
    clock = Clock()
    with serve(tmp_path, revocation=MemoryRevocationStore(clock)) as srv:
        yield srv, clock


def _exchange_form(server: AuthServer, **assertion: int) -> dict[str, str]:
    root = server.root()["access_token"]
    return {**server.auth(INFRABOT, **assertion),
            **server.exchange_form(root, audience=ARGOCD)}


def test_an_assertion_living_one_hour_is_accepted_by_default(server: AuthServer) -> None:
    assert server.settings.assertion_max_lifetime_seconds == HOUR
    response = server.post("/token", _exchange_form(server, ttl=HOUR))
    assert response.status_code == 200, response.text


def test_an_assertion_from_a_clock_a_little_ahead_may_live_the_whole_bound(
        server: AuthServer) -> None:
    ahead = int(time.time()) + 3  # within the leeway
    response = server.post("/token", _exchange_form(server, now=ahead, ttl=HOUR))
    assert response.status_code == 200, response.text


def test_the_bound_is_configurable(tmp_path: Path) -> None:
    with serve(tmp_path, assertion_max_lifetime_seconds=300) as srv:
        assert srv.post("/token", _exchange_form(srv, ttl=300)).status_code == 200
        body = refusal(srv.post("/token", _exchange_form(srv, ttl=301)), 401, "invalid_client",
                       "assertion_lifetime_too_long")
        assert "300s" in body["error_description"]


def test_the_bound_is_at_most_one_hour(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="assertion_max_lifetime_seconds"):
        Settings(state_dir=tmp_path, assertion_max_lifetime_seconds=HOUR + 1)


def test_a_client_assertion_jti_is_held_until_it_expires_in_memory(
        shifted: tuple[AuthServer, Clock]) -> None:
    server, clock = shifted
    form = {**server.auth(ORCH, ttl=HOUR), "token": server.root()["access_token"]}
    assert server.post("/introspect", form).json()["active"] is True
    clock.offset = HOUR - 30  # the registry's memory is an hour on; the assertion still lives
    refusal(server.post("/introspect", form), 401, "invalid_client", "assertion_replayed")


def test_a_grant_assertion_jti_is_held_until_it_expires_in_memory(
        shifted: tuple[AuthServer, Clock]) -> None:
    server, clock = shifted
    form = server.grant_form("user:sam", server.ctx(), ttl=HOUR)
    assert server.post("/token", {**server.auth(ORCH), **form}).status_code == 200
    clock.offset = HOUR - 30
    refusal(server.post("/token", {**server.auth(ORCH), **form}), 400, "invalid_grant",
            "assertion_replayed")


@pytest.mark.redis
def test_each_jti_is_held_until_its_exp_on_redis(redis_url: str,
                                                 redis_server: AuthServer) -> None:
    server = redis_server
    client_form = {**server.auth(ORCH, ttl=HOUR), "token": server.root()["access_token"]}
    grant_form = server.grant_form("user:sam", server.ctx(), ttl=HOUR)
    assert server.post("/introspect", client_form).status_code == 200
    assert server.post("/token", {**server.auth(ORCH), **grant_form}).status_code == 200
    client_jti = unverified_claims(client_form["client_assertion"])["jti"]
    grant_jti = unverified_claims(grant_form["assertion"])["jti"]
    r = redis.Redis.from_url(redis_url)
    try:
        leeway = server.settings.leeway_seconds
        for key in (f"assertion:{ORCH}:{client_jti}", f"grant:{ORCH}:{grant_jti}"):
            ttl = r.ttl(f"infrabot:once:{key}")
            assert HOUR - 5 <= ttl <= HOUR + leeway, (key, ttl)
    finally:
        r.close()
    refusal(server.post("/introspect", client_form), 401, "invalid_client", "assertion_replayed")
    refusal(server.post("/token", {**server.auth(ORCH), **grant_form}), 400, "invalid_grant",
            "assertion_replayed")
