"""A service sends its revocation query to Redis before it checks the token's signature and reads
the answer after, so the round trip overlaps the check. The query names what the unverified
payload says; these tests pin that the answer decides nothing for a token that fails
verification, that a revoked token is still refused, and that the connection stays clean."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.identity import generate_private_key, signing_key_of
from orchestrator.registry import RedisRevocationStore
from tests._redis import sends_and_verifies

MONITOR = {"monitor_id": 1001}
OTHER_KEY = signing_key_of(generate_private_key("ES256"), "ES256")
pytestmark = pytest.mark.redis


@pytest.fixture
def registry(redis_url: str) -> Iterator[RedisRevocationStore]:
    store = RedisRevocationStore.from_url(redis_url)
    yield store
    store.close()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch, registry: RedisRevocationStore) -> list[str]:
    """``send`` for each write to the registry's connections, ``verify`` for each signature
    check, in the order they happen."""
    return sends_and_verifies(
        monkeypatch, registry._r.connection_pool.connection_class)  # type: ignore[attr-defined]


@pytest.fixture
def service(stack_factory: Callable[..., Any], registry: RedisRevocationStore) -> Any:
    return stack_factory(services=("datadog",), revocation=registry)


def test_the_query_is_sent_before_the_signature_check_in_one_round_trip(service, http, events):
    service.call(http, "datadog.monitor.read", MONITOR)  # keys fetched, connection made
    token = service.token("datadog")
    events.clear()
    response = service.call(http, "datadog.monitor.read", MONITOR, token=token)
    assert response.status_code == 200
    assert events == ["send", "verify"]


def test_a_bad_signature_is_refused_as_that_whatever_the_registry_said(service, http, events):
    head, payload, signature = service.token("datadog").split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    response = service.call(http, "datadog.monitor.read", MONITOR, token=forged)
    assert (response.status_code, response.json()["reason"]) == (401, "bad_signature")
    [record] = service.records(response)
    assert (record.reason, record.on_behalf_of) == ("bad_signature", None)
    assert service.call(http, "datadog.monitor.read", MONITOR).status_code == 200


def _forged(service: Any, **changes: Any) -> str:
    """A token of this service's issuer with its payload changed after signing."""
    head, payload, signature = service.token("datadog").split(".")
    claims = {**_claims(f"{head}.{payload}.{signature}"), **changes}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{signature}"


@pytest.mark.parametrize("jti", [
    "\ud800abcdefgh",  # a lone surrogate: nothing could send it to Redis
    "not a valid jti",
])
def test_a_forged_payload_naming_what_no_token_could_is_refused_not_failed(service, http, jti):
    response = service.call(http, "datadog.monitor.read", MONITOR, token=_forged(service, jti=jti))
    assert (response.status_code, response.json()["reason"]) == (401, "bad_signature")
    assert service.call(http, "datadog.monitor.read", MONITOR).status_code == 200


def test_a_forged_token_naming_a_revoked_jti_is_refused_for_its_signature(service, http,
                                                                          registry):
    registry.revoke_jti("jti-revoked-0001", expires_at=int(time.time()) + 300)
    response = service.call(http, "datadog.monitor.read", MONITOR,
                            token=_forged(service, jti="jti-revoked-0001"))
    assert (response.status_code, response.json()["reason"]) == (401, "bad_signature")


def test_a_revoked_token_is_refused_with_its_chain(service, http, registry):
    token = service.token("datadog")
    claims = _claims(token)
    registry.revoke_jti(claims["jti"], expires_at=claims["exp"])
    response = service.call(http, "datadog.monitor.read", MONITOR, token=token)
    assert (response.status_code, response.json()["reason"]) == (401, "token_revoked")
    [record] = service.records(response)
    assert (record.reason, record.on_behalf_of, record.jti) == ("token_revoked", "user:sam",
                                                                claims["jti"])


def test_a_revoked_ancestor_is_refused(service, http, registry):
    token = service.token("datadog", ancestors=("jti-root-of-this-0001",))
    registry.revoke_jti("jti-root-of-this-0001", expires_at=_claims(token)["exp"])
    response = service.call(http, "datadog.monitor.read", MONITOR, token=token)
    assert (response.status_code, response.json()["reason"]) == (401, "ancestor_revoked")


def test_refused_and_admitted_calls_in_turn_leave_the_connections_clean(service, http, registry):
    """Each refused token left its query's answer unread until the connection went back to the
    pool; a later command on that pool reads its own answer, not a stale one."""
    registry.revoke_user("user:pat")
    forged = service.token("datadog", key=OTHER_KEY)
    for _ in range(5):
        good = service.call(http, "datadog.monitor.read", MONITOR)
        bad = service.call(http, "datadog.monitor.read", MONITOR, token=forged)
        assert (good.status_code, bad.status_code) == (200, 401)
    assert registry.user_version("user:pat") == 1


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload)
                                                                                  % 4)))
    return claims
