"""The one way tests get a real Redis database: a db of their own, flushed before and after.

Skips with a visible reason when Redis does not answer, except on CI (``CI=true``), where a
missing Redis fails the run instead of silently skipping the distributed-mode tests. Each test
package uses its own db number so packages never flush each other's data.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

TEST_REDIS_DB = 15  # tests/conftest.py's redis_url; INFRABOT_TEST_REDIS_URL must name it
DEFAULT_TEST_REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"


def redis_url_for(db: int) -> str:
    """``INFRABOT_TEST_REDIS_URL``'s server with database ``db``."""
    base = urlsplit(os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL))
    return urlunsplit((base.scheme, base.netloc, f"/{db}", "", ""))


@contextlib.contextmanager
def flushed_redis(db: int, url: str | None = None) -> Iterator[str]:
    """The URL of database ``db`` (or ``url``, which names it), empty for the test and emptied
    after it."""
    url = url or redis_url_for(db)
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


def sends_and_verifies(monkeypatch: pytest.MonkeyPatch, connection_class: type) -> list[str]:
    """From now on, in the order they happen: ``send`` for each write of commands by a Redis
    connection of ``connection_class``, ``verify`` for each JWS signature check."""
    from orchestrator.identity import _jws

    events: list[str] = []
    send, signature_ok = connection_class.send_packed_command, _jws.signature_ok

    def sent(self: Any, command: Any, check_health: bool = True) -> None:
        events.append("send")
        send(self, command, check_health)

    def verified(*args: Any) -> bool:
        events.append("verify")
        return signature_ok(*args)

    monkeypatch.setattr(connection_class, "send_packed_command", sent)
    monkeypatch.setattr(_jws, "signature_ok", verified)
    return events
