"""What tracing's parts cost one at a time, in one thread (bench/tracing.py's second table):
where the end-to-end figure goes. Each part beside its own baseline, in a fresh process (the
httpx instrumentation, once made, stays for the process)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ATTRIBUTES = {f"infrabot.attribute{i}": f"value-{i}" for i in range(9)}  # a span's ~9


def _per_call_us(call: Callable[[], object], count: int) -> float:
    for _ in range(count // 10):
        call()
    started = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - started) / count * 1e6


def _spans(count: int) -> tuple[list[ReadableSpan], float, float]:
    """``count`` finished spans with 9 attributes each, and what one costs bare and with them
    (start as current, end, handed to a processor)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")

    def bare() -> None:
        with tracer.start_as_current_span("exchange"):
            pass

    def attributed() -> None:
        with tracer.start_as_current_span("exchange", attributes=ATTRIBUTES):
            pass

    bare_us = _per_call_us(bare, count)
    memory.clear()
    attributed_us = _per_call_us(attributed, count)
    return list(memory.get_finished_spans())[:200], bare_us, attributed_us


def _httpx_request_us(count: int, instrumented: bool) -> float:
    """One httpx request through a transport that answers at once, with or without the
    maintained httpx instrumentation (a recording client span, ``traceparent`` injected)."""
    # Deferred: importing the instrumentation alone changes nothing, but keep the baseline bare
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, text="{}")))
    if instrumented:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider,
                                                  meter_provider=NoOpMeterProvider())
    with client:
        return _per_call_us(lambda: client.post("http://127.0.0.1:1/token", content=b"a=b"),
                            count)


def parts(count: int) -> dict[str, float]:
    """Microseconds per operation of each part (run in a fresh process)."""
    # Deferred: the encoders load only here
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from orchestrator.runs._spans import attributes_json
    from orchestrator.tracing import span_record

    spans, bare, attributed = _spans(count)

    def run_log() -> None:
        for span in spans:
            record = span_record(span)
            assert record is not None
            attributes_json(record.attributes)

    figures = {"span": bare, "span, 9 attributes": attributed,
               "otlp encode": _per_call_us(
                   lambda: encode_spans(spans).SerializePartialToString(), 20) / len(spans),
               "run-log record": _per_call_us(run_log, 20) / len(spans),
               "httpx request": _httpx_request_us(count, instrumented=False),
               "httpx request, instrumented": _httpx_request_us(count, instrumented=True)}
    return {name: round(value, 1) for name, value in figures.items()}


if __name__ == "__main__":
    print(json.dumps(parts(3000)))
