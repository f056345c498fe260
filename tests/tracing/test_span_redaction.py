"""clean_span, the one filter on the way to OTLP and the run log: exactly what it changes in a
span (URL attributes lose their query string, url.query goes, a token-shaped value becomes
``[redacted]`` wherever it is) and that a clean span passes as it is."""

from __future__ import annotations

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, Status, StatusCode

from orchestrator.tracing._redact import CleanedSpanExporter, clean_span

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"
CONTEXT = SpanContext(trace_id=1, span_id=2, is_remote=False)


def _span(name: str = "GET", status: Status | None = None,
          **attributes: object) -> ReadableSpan:
    return ReadableSpan(name=name, context=CONTEXT, attributes=attributes,  # type: ignore[arg-type]
                        events=[Event("exception", {"exception.message": f"bad {JWT}",
                                                    "exception.type": "ValueError"}, 5)],
                        links=[Link(CONTEXT, {"note": JWT, "n": 1})],
                        status=status or Status(StatusCode.UNSET), start_time=1, end_time=2)


def test_a_clean_span_passes_as_it_is() -> None:
    span = ReadableSpan(name="GET /api/v1/query", context=CONTEXT,
                        attributes={"http.url": "http://h/api/v1/query", "n": 3},
                        start_time=1, end_time=2)
    assert clean_span(span) is span


def test_exactly_what_is_changed() -> None:
    span = _span(
        f"call GET /{JWT}", Status(StatusCode.ERROR, f"refused {JWT}"),
        **{"http.url": "http://h/q?access_token=opaque#frag", "url.full": "http://h/q?a=1",
           "http.target": "/q?b=2", "url.query": "access_token=opaque", "url.path": "/q",
           "infrabot.note": f"Bearer {JWT}", "values": ("ok", JWT), "n": 7, "flag": True})
    cleaned = clean_span(span)
    assert cleaned.name == "[redacted]"
    assert cleaned.status.status_code is StatusCode.ERROR
    assert cleaned.status.description == "[redacted]"
    assert dict(cleaned.attributes or {}) == {
        "http.url": "http://h/q", "url.full": "http://h/q", "http.target": "/q",
        "url.path": "/q", "infrabot.note": "[redacted]", "values": "[redacted]", "n": 7,
        "flag": True}
    (event,) = cleaned.events
    assert (event.name, dict(event.attributes or {}), event.timestamp) == (
        "exception", {"exception.message": "[redacted]", "exception.type": "ValueError"}, 5)
    (link,) = cleaned.links
    assert link.context == CONTEXT and dict(link.attributes or {}) == {"note": "[redacted]",
                                                                       "n": 1}
    assert (cleaned.context, cleaned.start_time, cleaned.end_time, cleaned.kind) == (
        span.context, span.start_time, span.end_time, span.kind)


def test_the_exporter_sends_every_span_of_the_batch_cleaned() -> None:
    memory = InMemorySpanExporter()
    clean = ReadableSpan(name="ok", context=CONTEXT, attributes={"n": 1}, start_time=1,
                         end_time=2)
    CleanedSpanExporter(memory).export([clean, _span(**{"http.url": f"http://h/{JWT}"})])
    first, second = memory.get_finished_spans()
    assert first is clean
    assert dict(second.attributes or {}) == {"http.url": "[redacted]"}
