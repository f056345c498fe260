"""OpenTelemetry: every chain is one trace (docs/tracing.md).

W3C trace context travels from the CI event or ``POST /runs`` through the orchestrator, the
Celery task headers, every exchange at the authorization server and every service call, by the
maintained instrumentations (Celery, httpx, ASGI); our own spans cover the exchange rules
and enforcement. Spans go over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else into the
run log.
"""

from orchestrator.tracing._annotate import (
    annotate,
    current_trace_id,
    own_span,
    record_attributes,
    safe_text,
    traced_record,
    untraced,
)
from orchestrator.tracing._run_log import RunLogSpanExporter, span_record
from orchestrator.tracing._setup import exporters_for, instrument_app, start_tracing, tracing_on

__all__ = [
    "RunLogSpanExporter",
    "annotate",
    "current_trace_id",
    "exporters_for",
    "instrument_app",
    "own_span",
    "record_attributes",
    "safe_text",
    "span_record",
    "start_tracing",
    "traced_record",
    "tracing_on",
    "untraced",
]
