"""The mock services' latency (``INFRABOT_SERVICE_LATENCY_MS``): its written forms and their
errors, each API call waiting its service's latency over real HTTP, 0 meaning no wait at all
(no middleware), /openapi.json answered at once, the wait not blocking the server's event loop,
and a declared service waiting like a built-in one. The startup errors of ``infrabot serve`` for
a bad value are in tests/cli/test_errors_cli.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from mock_services._latency import AnswerDelay
from orchestrator.config import ServiceLatency, Settings
from orchestrator.errors import ConfigError
from orchestrator.services import load_and_install
from orchestrator.workflows import load_directory

Stack = Any  # conftest.Stack: not importable by name when several conftests are collected
SHIPPED = Path(__file__).resolve().parents[2] / "workflows"
QUERY = {"query": "avg:latency{service:service-x,env:prod}", "from": 0, "to": 600}
WAIT = 0.4


@pytest.mark.parametrize(("written", "datadog", "github", "shown"), [
    ("50", 0.05, 0.05, "50"),
    ("datadog=120,github=80", 0.12, 0.08, "datadog=120,github=80"),
    (" 50 , datadog=120 ", 0.12, 0.05, "50,datadog=120"),
    ("aws=7", 0.0, 0.0, "aws=7"),
    ("0", 0.0, 0.0, "0"),
    ("", 0.0, 0.0, "0"),
    ("10000", 10.0, 10.0, "10000"),
])
def test_the_written_forms(written: str, datadog: float, github: float, shown: str) -> None:
    latency = Settings(service_latency_ms=written).service_latency_ms
    assert (latency.seconds("datadog"), latency.seconds("github")) == (datadog, github)
    assert str(latency) == shown
    assert ServiceLatency.parse(str(latency)) == latency


def test_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRABOT_SERVICE_LATENCY_MS", "50,pagerduty=200")
    latency = Settings().service_latency_ms
    assert (latency.seconds("aws"), latency.seconds("pagerduty")) == (0.05, 0.2)
    monkeypatch.delenv("INFRABOT_SERVICE_LATENCY_MS")
    assert Settings().service_latency_ms == ServiceLatency()  # unset: every service at once


@pytest.mark.parametrize(("written", "message"), [
    ("fast", "'fast' is neither milliseconds (50) nor service=milliseconds (datadog=120)"),
    ("-5", "'-5' is neither milliseconds (50) nor service=milliseconds (datadog=120)"),
    ("datadog=", "'datadog=' is neither milliseconds (50) nor service=milliseconds"),
    ("Datadog=5", "'Datadog=5' is neither milliseconds (50) nor service=milliseconds"),
    ("50,,aws=1", "'' is neither milliseconds (50) nor service=milliseconds (datadog=120)"),
    ("10001", "'10001': at most 10000 ms"),
    ("50,60", "'60': the default is given twice"),
    ("aws=1,aws=2", "'aws=2': aws is given twice"),
])
def test_a_bad_value_says_which_entry(written: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(service_latency_ms=written)
    [error] = caught.value.errors()
    assert error["loc"] == ("service_latency_ms",)
    assert error["msg"].removeprefix("Value error, ").startswith(message)


@pytest.mark.parametrize("value", [-1, 10_001, True])
def test_a_bad_number_is_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(service_latency_ms=value)


def test_a_latency_for_no_service_is_a_configuration_error() -> None:
    latency = ServiceLatency.parse("datadog=5,slack=9")
    with pytest.raises(ConfigError) as caught:
        latency.check_services(["datadog", "github", "aws", "pagerduty", "chat"])
    assert caught.value.message == ("INFRABOT_SERVICE_LATENCY_MS: slack is not a service (the "
                                    "services: datadog, github, aws, pagerduty, chat)")
    latency.check_services(["datadog", "slack"])  # a declared service's name is one


def delays(app: FastAPI) -> int:
    return [m.cls for m in app.user_middleware].count(AnswerDelay)


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = call()
    return response, time.perf_counter() - start


def test_each_api_call_waits_its_services_latency(stack_factory: Callable[..., Stack],
                                                  http: httpx.Client) -> None:
    stack = stack_factory(services=("datadog", "github"),
                          service_latency_ms=f"datadog={int(WAIT * 1000)}")
    slow, slow_took = _timed(lambda: stack.call(http, "datadog.metrics.query", QUERY))
    assert slow.status_code == 200, slow.text
    assert slow_took >= WAIT
    refused, refused_took = _timed(lambda: stack.call(http, "datadog.metrics.query", QUERY,
                                                      token=""))
    assert refused.status_code == 401 and refused_took >= WAIT  # a refusal takes as long
    document, document_took = _timed(lambda: http.get(stack.urls["datadog"] + "/openapi.json"))
    assert document.status_code == 200 and document_took < WAIT
    fast, fast_took = _timed(lambda: stack.call(
        http, "github.pull.read", {"owner": "acme", "repo": "service-x", "pull_number": 124}))
    assert fast.status_code == 200, fast.text
    assert fast_took < WAIT  # github is not named: it answers at once
    assert (delays(stack.apps["datadog"]), delays(stack.apps["github"])) == (1, 0)


def test_0_means_no_wait_at_all(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(services=("datadog", "aws"), service_latency_ms="0,aws=0")
    assert not any(delays(app) for app in stack.apps.values())


def test_the_wait_leaves_the_event_loop_serving_other_requests(
        stack_factory: Callable[..., Stack]) -> None:
    """Six calls at once to one server (one event loop): waits that blocked the loop would
    take at least six times the latency; on the loop they overlap."""
    stack = stack_factory(services=("datadog",), service_latency_ms=str(int(WAIT * 1000)))
    tokens = [stack.token("datadog") for _ in range(6)]
    clients = [httpx.Client(timeout=10.0) for _ in tokens]  # made before the clock starts

    def one(pair: tuple[httpx.Client, str]) -> int:
        client, token = pair
        return stack.call(client, "datadog.metrics.query", QUERY, token=token).status_code

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(len(tokens)) as pool:
            statuses = list(pool.map(one, zip(clients, tokens, strict=True)))
        took = time.perf_counter() - start
    finally:
        for client in clients:
            client.close()
    assert statuses == [200] * len(tokens)
    assert WAIT <= took < 4 * WAIT, took  # blocking: at least 6 x WAIT


def test_a_declared_service_waits_like_a_built_in_one(stack_factory: Callable[..., Stack],
                                                      http: httpx.Client) -> None:
    declared = load_and_install(SHIPPED, load_directory(SHIPPED / "directory.yaml"))
    stack = stack_factory(services=(), declared=declared,
                          service_latency_ms=f"chat={int(WAIT * 1000)}")
    listed, took = _timed(lambda: stack.call(http, "chat.listChannels", {},
                                             scope="urn:infra:chat:read"))
    assert listed.status_code == 200, listed.text
    assert took >= WAIT
    assert delays(stack.apps["chat"]) == 1
