"""The webhook receiver over HTTP: ``POST /webhooks/github`` and ``GET /health``.

The raw body is read (at most one byte past the limit, so an oversized delivery is refused without
being buffered) and handed with the headers to :meth:`WebhookReceiver.receive` in a worker thread:
starting a run talks to the authorization server, which may share this event loop. Every answer
is JSON: ``{"status": ...}`` or, like every other server here, ``{"error", "error_description",
"reason"}`` (:mod:`orchestrator.ci._answers`), including unknown routes and a crash.

A body that has not arrived whole within :data:`orchestrator._bodies.BODY_DEADLINE_SECONDS` is
refused 408 ``body_timeout``; a client that closes the connection mid-body is recorded as a
client abort (499 ``client_disconnected``, an answer no one receives). Both are audited as the
route's other refusals are, and the connection is closed.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator._bodies import read_prefix
from orchestrator.ci._answers import Answer, Refused, error_answer, error_code
from orchestrator.ci._events import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER
from orchestrator.ci._receiver import WebhookReceiver
from orchestrator.ci._run_requests import MAX_REQUEST_BYTES, RUNS_ROUTE, RunRequest, RunRequests
from orchestrator.errors import BodyTimeout, ClientDisconnected

ROUTE = "/webhooks/github"


class Accepted(BaseModel):
    status: Literal["accepted"]
    run_id: str


class Ignored(BaseModel):
    status: Literal["ignored"]
    reason: str


class Pong(BaseModel):
    status: Literal["pong"]


class Refusal(BaseModel):
    error: str
    error_description: str
    reason: str
    field: str | None = None


class Health(BaseModel):
    status: Literal["ok"]


def _refusal(description: str) -> dict[str, Any]:
    return {"model": Refusal, "description": description}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Pong, "description": "A ping delivery was answered."},
    202: {"model": Accepted | Ignored,
          "description": "A run was started (accepted), or the event starts none (ignored)."},
    400: _refusal("unsupported_event, missing_delivery_id, invalid_delivery_id, "
                  "repeated_header (a header that must come once, twice) or "
                  "malformed_event (field names the wrong part: also a missing event id or "
                  "signed time)."),
    408: _refusal("body_timeout: the body did not arrive whole within 10 s."),
    401: _refusal("missing_signature or bad_signature."),
    403: _refusal("unknown_user or user_disabled."),
    409: _refusal("replayed_delivery: the same event id or the same signed body was already "
                  "received (whatever X-GitHub-Delivery says); stale_event: its signed time is "
                  "older than the replay window."),
    413: _refusal("payload_too_large (the limit is 256 KiB)."),
    422: _refusal("The run could not be started; reason is the orchestrator's."),
    500: _refusal("internal_error: the run could not be started, or the receiver failed."),
    503: _refusal("replay_cache_unavailable, or a dependency of the run is unavailable."),
}

_OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [
        {"name": EVENT_HEADER, "in": "header", "required": True,
         "schema": {"type": "string", "enum": ["deployment", "workflow_run", "ping"]}},
        {"name": DELIVERY_HEADER, "in": "header", "required": True,
         "schema": {"type": "string"},
         "description": "Names the delivery in the audit trail; not signed, so replays are "
                        "recognised by the signed body instead."},
        {"name": SIGNATURE_HEADER, "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
         "description": "HMAC-SHA256 of the raw body with the shared webhook secret."},
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "description": "A GitHub deployment or workflow_run webhook payload.",
        }}},
    },
}

def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` put in place (an OpenAPI document resolves
    ``#/$defs/...`` from its own root, where they are not)."""
    defs = schema.pop("$defs", {})

    def place(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return place(defs[ref.removeprefix("#/$defs/")])
            return {k: place(v) for k, v in node.items()}
        return [place(v) for v in node] if isinstance(node, list) else node

    inlined: dict[str, Any] = place(schema)
    return inlined


_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "A run was started on behalf of the token's user."},
    400: _refusal("malformed_request (field names the wrong part of the body)."),
    408: _refusal("body_timeout: the body did not arrive whole within 10 s."),
    401: _refusal("missing_token, or the identity provider's token was refused: "
                  "untrusted_issuer, audience_mismatch, token_expired, unknown_kid, "
                  "alg_not_allowed, ... (docs/federation.md)."),
    403: _refusal("unknown_user: the directory does not know the token's user."),
    422: _refusal("The run could not be started: unknown_workflow, environment_not_handled, "
                  "or the orchestrator's reason."),
    500: _refusal("internal_error."),
    503: _refusal("jwks_unavailable, or a dependency of the run is unavailable."),
}

_RUN_OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [{"name": "Authorization", "in": "header", "required": True,
                    "schema": {"type": "string", "pattern": "^Bearer .+$"},
                    "description": "Bearer <a token from a trusted identity provider>."}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": _inlined(RunRequest.model_json_schema())}}},
}


def create_webhook_app(receiver: WebhookReceiver,
                       run_requests: RunRequests | None = None) -> FastAPI:
    """The ASGI app serving ``receiver`` (and ``POST /runs`` with ``run_requests``)."""
    app = FastAPI(title="InfraBot Chains CI webhooks", version="1",
                  description="Signed GitHub-style CI events that start delegation runs.")

    @app.post(ROUTE, status_code=202, response_model=None, responses=_RESPONSES,
              openapi_extra=_OPENAPI_EXTRA, summary="Receive a GitHub webhook delivery")
    async def github_webhook(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, receiver.max_body_bytes)
        except Refused as refused:
            return _closing(await run_in_threadpool(receiver.refuse, request.headers, refused))
        status, answer = await run_in_threadpool(receiver.receive, request.headers, body)
        return JSONResponse(answer, status_code=status)

    if run_requests is not None:
        @app.post(RUNS_ROUTE, status_code=202, response_model=None, responses=_RUN_RESPONSES,
                  openapi_extra=_RUN_OPENAPI_EXTRA,
                  summary="Start a workflow with your identity provider's token")
        async def start_run(request: Request) -> JSONResponse:
            try:
                body = await _read_body(request, MAX_REQUEST_BYTES)
            except Refused as refused:  # recorded as the route records its other refusals
                return _closing(await run_in_threadpool(run_requests.refuse, refused))
            status, answer = await run_in_threadpool(
                run_requests.receive, request.headers.get("authorization"), body)
            return JSONResponse(answer, status_code=status)

    @app.get("/health", response_model=Health, summary="Liveness")
    async def health() -> Health:
        return Health(status="ok")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = error_code(exc.status_code)
        status, body = error_answer(exc.status_code, code, str(exc.detail))
        return JSONResponse(body, status_code=status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, _exc: Exception) -> JSONResponse:
        """Still JSON; Starlette re-raises after it, so uvicorn logs the traceback."""
        status, body = error_answer(500, "internal_error", "internal error")
        return JSONResponse(body, status_code=status)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (enough to refuse it).

    Raises :class:`Refused`: 408 ``body_timeout`` past the body deadline, 499
    ``client_disconnected`` when the client closed the connection first, each with its
    ``error`` named for the HTTP condition (no OAuth code fits)."""
    try:
        return await read_prefix(request, limit)
    except BodyTimeout as exc:
        raise Refused(exc.status, exc.reason, exc.message, error="request_timeout") from None
    except ClientDisconnected as exc:
        raise Refused(exc.status, exc.reason, exc.message,
                      error="client_closed_request") from None


def _closing(answer: Answer) -> JSONResponse:
    """A refusal of a body cut short: the rest of it is never read, the connection not reused."""
    status, body = answer
    return JSONResponse(body, status_code=status, headers={"Connection": "close"})
