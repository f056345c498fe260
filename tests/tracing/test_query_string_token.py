"""A token a client puts in a URL's query string (the service refuses it: 400
unsupported_token_location) is never recorded in a span: the server span's and the client
span's URL attributes hold no query string, and what goes out (OTLP, the run log) redacts any
attribute still shaped like a token instead of refusing the batch it is in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_trace_id

from infrabot.stack import ORCHESTRATOR_CLIENT
from infrabot.system import System, running_system
from orchestrator.audit import contains_raw_jwt
from orchestrator.identity import Context
from orchestrator.runs import RunStore, SpanLog
from tests.e2e._harness import (
    RUN_TIMEOUT,
    accepted_run_id,
    deployment,
    embedded_settings,
    post_webhook,
)
from tests.tracing.test_otlp_export import Receiver

JUNK_JWT = "eyJx.eyJ.x"  # token-shaped, no token: the path is what a span records of it


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _token(system: System) -> str:
    ctx = Context(trigger="manual", environment="staging", repository="acme/service-x",
                  commit="0000000", run_id="run-querytoken01")
    return system.stack.auth.issue_root("user:sam", ["urn:infra:monitoring:read"], ctx,
                                        "agent:infrabot", ORCHESTRATOR_CLIENT).access_token


def _query_with_token(system: System, token: str) -> str:
    """Sends the token in the query string, plainly and percent-encoded (the server decodes
    it back); both refused. The service's base URL."""
    datadog = system.endpoints()["datadog"]
    for url in (f"{datadog}/api/v1/query?query=x&access_token={token}",
                f"{datadog}/api/v1/query?access_token=%65{token[1:]}&query=y"):
        answer = httpx.get(url, trust_env=False)
        assert answer.status_code == 400
        assert answer.json()["reason"] == "unsupported_token_location"
    return datadog


def test_no_span_records_a_query_string(tmp_path: Path) -> None:
    """The spans as recorded (the SDK's in-memory exporter sees them unfiltered)."""
    memory = InMemorySpanExporter()
    with running_system(embedded_settings(tmp_path / "state"),
                        span_exporters=[memory]) as system:
        token = _token(system)
        datadog = _query_with_token(system, token)
    spans = [s for s in memory.get_finished_spans() if s.name.endswith("GET /api/v1/query")]
    assert sorted(s.name for s in spans) == ["GET /api/v1/query"] * 2 + \
        ["call GET /api/v1/query"] * 2
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes["http.url"] == f"{datadog}/api/v1/query"
        assert "url.query" not in attributes
    for span in memory.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert token[1:] not in str(value) and "access_token" not in str(value), span.name


def test_the_otlp_receiver_gets_no_token_nor_query_string(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    with running_system(embedded_settings(tmp_path / "state")) as system:
        token = _token(system)
        datadog = _query_with_token(system, token)
        # a token-shaped path: the URL attributes that hold it go out redacted
        assert httpx.get(f"{datadog}/api/v1/{JUNK_JWT}", trust_env=False).status_code == 404
    # leaving the block flushed the batch
    spans = receiver.spans()
    queries = [attrs for name, attrs, _ in spans if name == "GET /api/v1/query"]
    assert [a["http.url"] for a in queries] == [f"{datadog}/api/v1/query"] * 2
    (junk_server,) = [attrs for name, attrs, _ in spans if name == "GET"]
    assert junk_server["http.url"] == "[redacted]"
    assert [name for name, _, _ in spans if name.startswith("call GET /api/v1/")] == \
        ["call GET /api/v1/query"] * 2  # the junk call's name is redacted too
    assert [name for name, _, _ in spans].count("[redacted]") == 1
    for name, attrs, _ in spans:
        assert not contains_raw_jwt(name)
        for value in attrs.values():
            assert token[1:] not in value and "access_token" not in value, name
            assert not contains_raw_jwt(value), name


def test_a_token_shaped_attribute_loses_no_concurrent_runs_spans(tmp_path: Path) -> None:
    """Run-log mode: unauthenticated requests with ``?access_token=eyJ...`` and token-shaped
    paths while a run goes on; every span is kept, the token-shaped values redacted."""
    settings = embedded_settings(tmp_path / "state")
    tracer = trace.get_tracer("tests.tracing")
    done = threading.Event()
    junk_traces: list[str] = []

    def junk(datadog: str) -> None:
        while not done.is_set():
            with tracer.start_as_current_span("junk") as span:
                junk_traces.append(format_trace_id(span.get_span_context().trace_id))
                httpx.get(f"{datadog}/api/v1/query?access_token={JUNK_JWT}", trust_env=False)
                httpx.get(f"{datadog}/api/v1/{JUNK_JWT}", trust_env=False)
            done.wait(0.1)

    with running_system(settings) as system:
        sender = threading.Thread(target=junk, args=(system.endpoints()["datadog"],))
        sender.start()
        try:
            run_id = accepted_run_id(post_webhook(system.webhooks_url,
                                                  deployment("sam", environment="staging")))
            run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)
        finally:
            done.set()
            sender.join(10)
    assert run.status == "succeeded" and run.trace_id
    with RunStore(settings.runs_target) as store:
        kept = SpanLog(store).of_trace(run.trace_id)
        junk_kept = [SpanLog(store).of_trace(t) for t in junk_traces]
    assert len(kept) > 20 and {"exchange", "enforce datadog"} <= {s.name for s in kept}
    assert junk_traces
    for spans in junk_kept:  # each request's client and server span, the refusal's enforcement
        names = sorted(s.name for s in spans)
        assert names == ["GET", "GET /api/v1/query", "[redacted]", "call GET /api/v1/query",
                         "enforce datadog", "junk"]
        urls = sorted(str(s.attributes["http.url"]) for s in spans if "http.url" in s.attributes)
        assert urls[-1].endswith("/api/v1/query") and urls[0] == "[redacted]"
        assert urls.count("[redacted]") == 2  # the token-shaped path's server and client spans
