"""Key rotation while the services run: old keys stay trusted until retired, new keys are
picked up on first sight of their kid, and unknown kids cannot make a service hammer the
authorization server."""

from __future__ import annotations

import time

from orchestrator.identity import generate_private_key, signing_key_of

MONITOR = {"monitor_id": 1001}


def status(stack, http, token: str) -> tuple[int, str | None]:
    response = stack.call(http, "datadog.monitor.read", MONITOR, token=token)
    return response.status_code, response.json().get("reason")


def test_rotation_old_and_new_keys(stack_factory, http, manual_clock):
    stack = stack_factory(services=("datadog",), key_clock=manual_clock, min_refresh_seconds=5)
    old_token = stack.token("datadog")
    assert status(stack, http, old_token) == (200, None)
    assert stack.auth.jwks_fetches == 1

    manual_clock.advance(60)
    stack.ring.rotate(now=int(time.time()), keep_for_seconds=900)
    new_token = stack.token("datadog")
    assert status(stack, http, old_token) == (200, None)
    assert stack.auth.jwks_fetches == 1  # a known kid needs no fetch
    assert status(stack, http, new_token) == (200, None)  # unknown kid: one refresh, at once
    assert stack.auth.jwks_fetches == 2
    assert status(stack, http, old_token) == (200, None)  # still published until retired


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(stack_factory, http,
                                                                   manual_clock):
    stack = stack_factory(services=("datadog",), key_clock=manual_clock, min_refresh_seconds=5)
    assert status(stack, http, stack.token("datadog")) == (200, None)
    strangers = [signing_key_of(generate_private_key("ES256"), "ES256") for _ in range(25)]
    for key in strangers:
        assert status(stack, http, stack.token("datadog", key=key)) == (401, "unknown_kid")
    assert stack.auth.jwks_fetches == 1
    manual_clock.advance(5)
    for key in strangers:
        assert status(stack, http, stack.token("datadog", key=key)) == (401, "unknown_kid")
    assert stack.auth.jwks_fetches == 2
    assert status(stack, http, stack.token("datadog")) == (200, None)


def test_a_retired_key_is_refused_once_the_set_is_refreshed(stack_factory, http, manual_clock):
    stack = stack_factory(services=("datadog",), key_clock=manual_clock, min_refresh_seconds=5)
    old_token = stack.token("datadog")
    assert status(stack, http, old_token) == (200, None)
    stack.ring.rotate(now=int(time.time()), keep_for_seconds=0)  # retired at once
    manual_clock.advance(10)
    assert status(stack, http, stack.token("datadog")) == (200, None)
    assert status(stack, http, old_token) == (401, "unknown_kid")
