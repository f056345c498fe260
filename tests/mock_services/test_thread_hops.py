"""A checked service call leaves the event loop twice: once to verify and admit the caller (the
revocation check blocks), once to append the audit record. Each thread hop costs the server
about 0.1 ms of CPU, and every step of every hop of a workflow makes such a call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

MONITOR = {"monitor_id": 1001}


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each function run in a worker thread from now on."""
    names: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return names


def test_an_admitted_call_makes_two_thread_hops(stack, http, hops):
    stack.call(http, "datadog.monitor.read", MONITOR)  # keys fetched before counting
    hops.clear()
    response = stack.call(http, "datadog.monitor.read", MONITOR)
    assert response.status_code == 200
    assert hops == ["_verify_and_admit", "append"]
    [record] = stack.records(response)
    assert (record.decision, record.reason) == ("allow", "ok")


def test_a_refused_call_makes_the_same_two_hops(stack, http, hops):
    stack.call(http, "datadog.monitor.read", MONITOR)
    hops.clear()
    response = stack.call(http, "datadog.monitor.read", MONITOR,
                          scope="urn:infra:repo:read")
    assert response.status_code == 403
    assert hops == ["_verify_and_admit", "append"]
    [record] = stack.records(response)
    assert (record.reason, record.performed_by) == ("insufficient_scope", "agent:infrabot")
