"""instrument_app puts the maintained ASGI instrumentation on any server app: a FastAPI app, a
plain Starlette app (the hot routes may be either) or a bare ASGI callable. One server span per
request (no receive/send spans), named by the route template, a child of the caller's
``traceparent``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from orchestrator.tracing import instrument_app, start_tracing
from tests.e2e._harness import embedded_settings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


async def _item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["item_id"])


def _starlette() -> Starlette:
    return Starlette(routes=[Route("/items/{item_id}", _item, methods=["PUT"])])


def _fastapi() -> FastAPI:
    app = FastAPI()
    app.router.routes.append(Route("/items/{item_id}", _item, methods=["PUT"]))
    return app


async def _bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await PlainTextResponse("bare")(scope, receive, send)


def _served(app: Any, path: str, tmp_path: Path) -> tuple[httpx.Response, list[ReadableSpan]]:
    memory = InMemorySpanExporter()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=instrument_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.put(path, headers={"traceparent": TRACEPARENT})

    with start_tracing(embedded_settings(tmp_path), "infrabot", exporters=[memory]):
        answer = asyncio.run(call())
    # this request's spans: anything another system of this process finished meanwhile is not
    return answer, [s for s in memory.get_finished_spans()
                    if s.context is not None and format_trace_id(s.context.trace_id) == TRACE_ID]


@pytest.mark.parametrize("make", [_starlette, _fastapi], ids=["starlette", "fastapi"])
def test_one_server_span_per_request_named_by_its_route(make: Any, tmp_path: Path) -> None:
    answer, spans = _served(make(), "/items/i-42", tmp_path)
    assert answer.status_code == 200 and answer.text == "i-42"
    (span,) = spans  # no receive/send spans of their own
    assert span.kind is SpanKind.SERVER
    assert span.name == "PUT /items/{item_id}"  # the template, never the id
    assert span.attributes is not None and span.attributes["http.route"] == "/items/{item_id}"
    assert span.context is not None and format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.parent is not None and format_span_id(span.parent.span_id) == PARENT_ID


def test_a_path_no_route_matches_is_named_by_its_method_alone(tmp_path: Path) -> None:
    answer, spans = _served(_starlette(), "/nowhere/i-42", tmp_path)
    assert answer.status_code == 404
    (span,) = spans
    assert span.name == "PUT"


def test_a_bare_asgi_callable_is_wrapped(tmp_path: Path) -> None:
    answer, spans = _served(_bare, "/anything", tmp_path)
    assert answer.text == "bare"
    (span,) = spans
    assert span.name == "PUT"
    assert span.context is not None and format_trace_id(span.context.trace_id) == TRACE_ID
