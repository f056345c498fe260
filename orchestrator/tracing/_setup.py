"""One tracer provider per process and where its spans go (docs/tracing.md).

:func:`start_tracing` instruments the process once (Celery's task messages carry W3C trace
context in their headers; every httpx request carries ``traceparent``; the servers' ASGI apps
read it, :func:`instrument_app`) and routes finished spans: over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set, with the standard
``OTEL_*`` variables the exporter reads itself; otherwise into the run log, where ``runs show
RUN --trace`` and the HTML report read them. A test adds its own exporter (the SDK's
in-memory one). Tracing off (``INFRABOT_TRACING=false``) instruments nothing.

The provider is the process's global one, set once; the destinations are swapped per running
system through :class:`_Router`, so one test process may start and stop several systems.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from starlette.routing import Match

from orchestrator.config import Settings
from orchestrator.tracing._redact import URL_ATTRIBUTES, CleanedSpanExporter, without_query
from orchestrator.tracing._run_log import RunLogSpanExporter

_lock = threading.Lock()
# Traces only: the instrumentations' own metrics (request durations, sizes, active requests)
# would go to the global meter provider, which nothing sets; given a no-op one they cost
# nothing per request instead of a proxy's lookups (docs/tracing.md, Cost).
_NO_METRICS = NoOpMeterProvider()
EXPORT_EVERY_MS = 1000  # a batch at most this often: fewer, larger writes and requests
_QUERY = "infrabot.query_string"  # a request's query string, kept past the instrumentation


class _Router(SpanProcessor):
    """The processors of the systems running in this process, changed as they start and stop."""

    def __init__(self) -> None:
        self._processors: tuple[SpanProcessor, ...] = ()
        self._lock = threading.Lock()

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = (*self._processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


_router = _Router()
_provider: TracerProvider | None = None


def tracing_on() -> bool:
    """Whether this process has ever started tracing: until it has, no span can record, so
    our own spans are not even started (tracing off costs a request nothing)."""
    return _provider is not None


def _instrumented(service: str) -> TracerProvider:
    """The process's provider, made and the libraries instrumented on first use."""
    global _provider  # one provider per process, by OpenTelemetry's design
    with _lock:
        if _provider is None:
            _provider = TracerProvider(resource=Resource.create({"service.name": service}))
            _provider.add_span_processor(_router)
            trace.set_tracer_provider(_provider)
            CeleryInstrumentor().instrument(tracer_provider=_provider,
                                            meter_provider=_NO_METRICS)
            HTTPXClientInstrumentor().instrument(tracer_provider=_provider,
                                                 meter_provider=_NO_METRICS,
                                                 request_hook=_name_call)
        return _provider


def _name_call(span: Span, request: RequestInfo) -> None:
    """A client span says what it calls: ``call POST /token`` (the path only: a query string
    could hold anything), and its URL attribute (``http.url`` or ``url.full``) loses the query
    string the instrumentation put in it."""
    url = request.url
    path = url.path if isinstance(url, httpx.URL) else url[3].decode("latin-1").split("?")[0]
    method = request.method.decode("ascii", "replace")
    if span.is_recording():
        span.update_name(f"call {method} {path}")
        recorded = span.attributes or {}
        span.set_attributes({key: without_query(value) for key in URL_ATTRIBUTES
                             if isinstance(value := recorded.get(key), str)})


def exporters_for(settings: Settings) -> list[SpanExporter]:
    """Where this process's spans go: OTLP when an endpoint is set, else the run log; either
    way through the one filter (:func:`~orchestrator.tracing._redact.clean_span`)."""
    if settings.otlp_endpoint:
        # Deferred on purpose: the OTLP exporter (protobuf) loads only when exporting
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return [CleanedSpanExporter(OTLPSpanExporter())]
    return [RunLogSpanExporter(settings.runs_target)]


@contextmanager
def start_tracing(settings: Settings, service: str, *,
                  exporters: list[SpanExporter] | None = None) -> Iterator[bool]:
    """Trace this process while the block runs (yields whether it does); spans finished in it
    are flushed when it ends. ``exporters`` replace :func:`exporters_for`'s."""
    if not settings.tracing:
        yield False
        return
    _instrumented(service)
    processors = [BatchSpanProcessor(e, schedule_delay_millis=EXPORT_EVERY_MS,
                                     max_queue_size=8192, max_export_batch_size=2048)
                  for e in (exporters if exporters is not None else exporters_for(settings))]
    for processor in processors:
        _router.add(processor)
    try:
        yield True
    finally:
        for processor in processors:
            _router.remove(processor)
            processor.shutdown()


def instrument_app(app: Any) -> Any:
    """A server's ASGI app (Starlette or FastAPI, or any ASGI callable), reading ``traceparent``
    and making one span per request, named by its route (``POST /token``, ``PUT
    /incidents/{id}``); no-op until :func:`start_tracing` made the provider.

    The ASGI instrumentation is added as the app's outermost middleware of its own (inside
    Starlette's error handler, so a failure is recorded on the span before it becomes a 500);
    an app without ``add_middleware`` is wrapped. It is shown each request without its query
    string (:class:`_WithoutQuery`), so no span attribute holds one."""
    if _provider is None:
        return app
    options: dict[str, Any] = {
        "tracer_provider": _provider, "meter_provider": _NO_METRICS,
        "excluded_urls": "health,.well-known", "exclude_spans": ["receive", "send"],
        "default_span_details": _route_name}
    if hasattr(app, "add_middleware"):
        app.add_middleware(_WithoutQuery, **options)
        return app
    return _WithoutQuery(app, **options)


class _WithoutQuery:
    """The ASGI instrumentation around ``app``, given each request's scope without its query
    string (it would record it in ``http.url`` or ``url.query``: a token a client put there);
    ``app`` gets the query string back. The instrumentation is its ``app``: FastAPI finds it
    there, following ``app`` attributes, and then opens no server span of its own (its native
    telemetry, which records ``url.query``)."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.app = OpenTelemetryMiddleware(_QueryRestored(app), **options)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = scope.get("query_string")
        if query:
            scope = {**scope, "query_string": b"", _QUERY: query}
        await self.app(scope, receive, send)


class _QueryRestored:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = scope.get(_QUERY)
        if query is not None:
            scope = {key: value for key, value in scope.items() if key != _QUERY}
            scope["query_string"] = query
        await self._app(scope, receive, send)


def _route_name(scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A server span's name, ``METHOD <route template>``, and its ``http.route``; the method
    alone where no route matches (a path's ids never make names of their own)."""
    method = str(scope.get("method", "HTTP"))
    for route in getattr(scope.get("app"), "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            template = str(getattr(route, "path", ""))
            return f"{method} {template}", {"http.route": template}
    return method, {}
