"""The span exporter that keeps spans in the run log (:class:`~orchestrator.runs.SpanLog`),
for ``runs show RUN --trace`` and the HTML report's waterfall when no OTLP endpoint is set.
Every span goes through :func:`~orchestrator.tracing._redact.clean_span` first (a token-shaped
value is redacted, not the batch refused)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from orchestrator._log import get_logger
from orchestrator.errors import InfraBotError
from orchestrator.runs import RunStore, SpanLog, SpanRecord
from orchestrator.tracing._redact import clean_span


def span_record(span: ReadableSpan) -> SpanRecord | None:
    """The run log's form of a finished span (None for one without a context or times)."""
    context, start, end = span.context, span.start_time, span.end_time
    if context is None or start is None or end is None:
        return None
    parent = span.parent
    attributes = {k: v if isinstance(v, str | int | float | bool) else str(v)
                  for k, v in (span.attributes or {}).items()}
    return SpanRecord(
        trace_id=format_trace_id(context.trace_id), span_id=format_span_id(context.span_id),
        parent_id=format_span_id(parent.span_id) if parent is not None else None,
        name=span.name, service=str(span.resource.attributes.get("service.name", "")),
        start_ns=start, end_ns=end,
        status="error" if span.status.status_code is StatusCode.ERROR else "ok",
        attributes=attributes)


class RunLogSpanExporter(SpanExporter):
    """Appends each batch to the run log at ``target``, opened in this process (again after a
    fork: a prefork worker's child has its own connection)."""

    def __init__(self, target: Path | str) -> None:
        self._target = target
        self._store: RunStore | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _log(self) -> SpanLog:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = RunStore(self._target), os.getpid()
        return SpanLog(self._store)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records = [r for r in (span_record(clean_span(s)) for s in spans) if r is not None]
        try:
            with self._lock:
                self._log().add(records)
        except (InfraBotError, ValueError) as exc:  # the log unavailable; a token unredacted
            get_logger().warning("spans_not_kept", reason=type(exc).__name__, count=len(records))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._store is not None and self._pid == os.getpid():
                self._store.close()
            self._store = None
