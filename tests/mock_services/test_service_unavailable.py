"""A revocation registry or key set that cannot be reached: 503, fail closed, audited."""

from __future__ import annotations

import json

import httpx
import pytest

from mock_services import fetch_published_keys
from mock_services._serve import reserve
from orchestrator.errors import Unavailable
from orchestrator.registry import RedisRevocationStore

MONITOR = {"monitor_id": 1001}


def closed_port() -> int:
    sock = reserve()
    port = sock.getsockname()[1]
    sock.close()
    return port


def unavailable(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.json()["reason"] == reason
    assert response.headers["retry-after"] == "1"
    assert "www-authenticate" not in response.headers


def test_an_unreachable_registry_is_503(stack_factory, http):
    registry = RedisRevocationStore.from_url(f"redis://127.0.0.1:{closed_port()}/0")
    stack = stack_factory(services=("datadog",), revocation=registry)
    token = stack.token("datadog", user_version=0, registry_epoch="epoch-unreached")
    response = stack.call(http, "datadog.monitor.read", MONITOR, token=token)
    unavailable(response, "revocation_unavailable")
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny",
                                                               "revocation_unavailable", 503)
    assert record.on_behalf_of == "user:sam"  # the token verified; only the registry failed


def test_an_unreachable_key_set_is_503(stack_factory, http):
    stack = stack_factory(services=("datadog",), with_auth=False)
    response = stack.call(http, "datadog.monitor.read", MONITOR)
    unavailable(response, "jwks_unavailable")
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.on_behalf_of) == ("deny", "jwks_unavailable",
                                                                     None)


def test_a_failing_key_endpoint_is_503(stack_factory, http):
    clock = [1000.0]
    stack = stack_factory(services=("datadog",), key_clock=lambda: clock[0],
                          min_refresh_seconds=5.0)
    stack.auth.failing = True
    unavailable(stack.call(http, "datadog.monitor.read", MONITOR), "jwks_unavailable")
    stack.auth.failing = False
    # refused without a fetch until the interval has passed, then served
    unavailable(stack.call(http, "datadog.monitor.read", MONITOR), "jwks_unavailable")
    clock[0] += 5.0
    assert stack.call(http, "datadog.monitor.read", MONITOR).status_code == 200


ISSUER = "http://127.0.0.1:8700"
METADATA = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks.json"}


def transport(metadata: object, jwks: object = None, status: int = 200) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, content=json.dumps(metadata).encode())
        return httpx.Response(status, content=json.dumps(jwks).encode())

    return httpx.MockTransport(handle)


def test_published_keys_are_read_through_the_metadata():
    keys = {"keys": []}
    assert fetch_published_keys(ISSUER, ISSUER, transport=transport(METADATA, keys)) == keys


@pytest.mark.parametrize("metadata, jwks, status", [
    ({**METADATA, "issuer": "http://evil.example"}, {"keys": []}, 200),
    ({"issuer": ISSUER}, {"keys": []}, 200),
    ({**METADATA, "jwks_uri": "file:///etc/passwd"}, {"keys": []}, 200),
    (METADATA, {"keys": []}, 404),
    (METADATA, ["not", "an", "object"], 200),
    ("not an object", None, 200),
])
def test_unusable_metadata_or_key_sets_are_unavailable(metadata, jwks, status):
    with pytest.raises(Unavailable) as caught:
        fetch_published_keys(ISSUER, ISSUER, transport=transport(metadata, jwks, status))
    assert caught.value.reason == "jwks_unavailable"
