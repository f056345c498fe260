"""The one filter every span passes on its way out of the process, to OTLP or the run log
(docs/tracing.md, Span attributes, and no token).

A URL attribute (``http.url``, ``url.full``, ``http.target``) loses its query string and
fragment, ``url.query`` is dropped, and any value shaped like a raw JWT (the span's name, an
attribute, an event's or a link's attribute, the status description) becomes ``[redacted]``:
that value only, so the other spans of a batch, and the rest of this one, are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from orchestrator.audit import contains_raw_jwt

REDACTED = "[redacted]"
# Where the instrumentations put a request's URL, in either semantic-conventions mode
# (OTEL_SEMCONV_STABILITY_OPT_IN): the ASGI server span http.url, http.target (old) or
# url.path, url.query (new); the httpx client span http.url (old) or url.full (new).
URL_ATTRIBUTES = frozenset({"http.url", "url.full", "http.target"})
QUERY_ATTRIBUTES = frozenset({"url.query"})


def without_query(url: str) -> str:
    """``url`` up to its query string or fragment."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _token_shaped(value: Any) -> bool:
    if isinstance(value, bool | int | float) or value is None:
        return False
    return contains_raw_jwt(value if isinstance(value, str) else str(value))


def _clean_text(value: str) -> str:
    return REDACTED if contains_raw_jwt(value) else value


def clean_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes as they may leave the process (see the module's docstring)."""
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in QUERY_ATTRIBUTES:
            continue
        if key in URL_ATTRIBUTES and isinstance(value, str):
            value = without_query(value)
        out[key] = REDACTED if _token_shaped(value) else value
    return out


def clean_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself when nothing in it changes, else a copy with what changes cleaned."""
    attributes = clean_attributes(span.attributes)
    events = [Event(e.name, clean_attributes(e.attributes), e.timestamp) for e in span.events]
    links = [Link(link.context, clean_attributes(link.attributes)) for link in span.links]
    name = _clean_text(span.name)
    description = span.status.description and _clean_text(span.status.description)
    if (name == span.name and description == span.status.description
            and attributes == dict(span.attributes or {})
            and all(e.attributes == dict(o.attributes or {}) for e, o in zip(events, span.events))
            and all(n.attributes == dict(o.attributes or {})
                    for n, o in zip(links, span.links))):
        return span
    return ReadableSpan(
        name=name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attributes, events=events, links=links, kind=span.kind,
        status=Status(span.status.status_code, description),
        start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope)


class CleanedSpanExporter(SpanExporter):
    """``exporter`` (OTLP's) given every span through :func:`clean_span`."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([clean_span(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
