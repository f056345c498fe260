"""What the spans say and the audit records carry of each other (docs/tracing.md).

:func:`traced_record` is the audit store's hook: a record written inside a span gets the span's
``trace_id`` in its context (so audit and trace join), and the span gets the record's decision
as attributes: the run, the agent, on behalf of whom, the scope, the decision and its reason.
Every attribute comes from an audit record (built from verified claims, display-safe, refused if
it holds a raw JWT) or from :func:`safe_text`: never a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, format_trace_id

from orchestrator.audit import AuditRecord, contains_raw_jwt
from orchestrator.tracing._setup import tracing_on

_PREFIX = "infrabot."
# One tracer for our spans (the API's proxy: it binds to the provider once one is set), not a
# new tracer and instrumentation scope per span.
_tracer = trace.get_tracer("infrabot")


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def safe_text(value: str | None, limit: int = 512) -> str:
    """Client-supplied text fit for an attribute: short, and never anything shaped like a
    token (then a placeholder)."""
    if not value:
        return ""
    if len(value) > limit or contains_raw_jwt(value):
        return "[unrecognised]"
    return value


def record_attributes(record: AuditRecord) -> dict[str, str]:
    values = {"run_id": record.run_id, "agent": record.performed_by,
              "on_behalf_of": record.principal, "decision": record.decision,
              "reason": record.reason, "action": record.action, "service": record.service,
              "scope.granted" if record.decision == "allow" else "scope.held":
                  " ".join(record.scopes) or None,
              "chain": " <- ".join(record.chain) or None}
    return {_PREFIX + k: v for k, v in values.items() if v}


def traced_record(record: AuditRecord) -> AuditRecord:
    """The audit store's hook (see the module's docstring)."""
    span = trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid:
        return record
    if span.is_recording():
        span.set_attributes(record_attributes(record))
    return record.model_copy(update={"context": {**record.context,
                                                 "trace_id": format_trace_id(context.trace_id)}})


@contextmanager
def own_span(name: str, **attributes: str | None) -> Iterator[Span]:
    """A span of our own (an exchange, an enforcement, a hop) as the current span; none (the
    invalid span) in a process that never started tracing."""
    if not tracing_on():
        yield INVALID_SPAN
        return
    clean = {_PREFIX + k: v for k, v in attributes.items() if v}
    with _tracer.start_as_current_span(name, attributes=clean) as span:
        yield span


@contextmanager
def untraced() -> Iterator[None]:
    """No current span while the block runs: work a span's thread does for other runs (the
    revocation of every ended run, from the hop that ended one) neither annotates that span nor
    gives its records that span's trace id."""
    token = otel_context.attach(otel_context.Context())
    try:
        yield
    finally:
        otel_context.detach(token)


def annotate(**attributes: str | None) -> None:
    """Add attributes to the current span (nothing outside a trace)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({_PREFIX + k: v for k, v in attributes.items() if v})
