"""A request's body, read and parsed once for every mock service, and the answers to what does
not parse or validate: bounded size (413), JSON by content type with bounded numbers (no
``NaN``, no 10,000-digit integers: 400 ``number_out_of_range``), FastAPI's validation and HTTP
errors in the one error shape (``error``, ``error_description``, ``reason``)."""

from __future__ import annotations

import email.message
import json
import math
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mock_services._bearer import ApiError, error_response
from orchestrator.catalog import clean_text

MAX_BODY_BYTES = 64 * 1024


async def bounded_body(request: Request) -> bytes:
    """The body, read at most up to :data:`MAX_BODY_BYTES` (a chunked body is counted as it
    arrives); kept on the request so the handler reads the same bytes."""
    too_large = ApiError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES}")
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's cache: FastAPI's body parsing reads it from here
    return body


MAX_INT_DIGITS = 19  # an int64; every numeric field of every route is bounded well inside it


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this media type as JSON: ``application/json`` or
    ``application/*+json`` in any letter case, parameters ignored; without a content type it
    does not (``strict_content_type``). The same test as FastAPI's, made the same way."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


def parse_body(request: Request, body: bytes) -> Any:
    """The request's JSON body, parsed once, or ``None`` when it is not JSON.

    The parsed object is stored where Starlette caches ``request.json()``, which is where the
    handler's body parsing reads it: the audited action and resource, the target check and the
    handler act on one object. Numbers beyond any bound a route allows are refused here
    (400 ``number_out_of_range``), as is a body that is not JSON (400 ``malformed_json``)."""
    if not body or not is_json(request.headers.get("content-type")):
        return None
    try:
        parsed = json.loads(body, parse_int=_bounded_int, parse_float=_finite_float,
                            parse_constant=_no_constant)
    except ApiError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from exc
    request._json = parsed  # Starlette's cache: FastAPI's body parsing reads it from here
    return parsed


def _out_of_range() -> ApiError:
    return ApiError(400, "number_out_of_range", "a number in the body is out of range")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _out_of_range()
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _out_of_range()
    return value


def _no_constant(text: str) -> float:
    raise _out_of_range()


def validation_response(exc: RequestValidationError) -> tuple[Response, str]:
    """400 ``malformed_json`` for a body that is not JSON, 400 ``number_out_of_range`` for a
    number outside its field's bounds, 422 ``validation_failed`` otherwise; names the fields,
    never echoes the input."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        invalid = {"error": "invalid_request", "error_description": "the body is not valid JSON",
                   "reason": "malformed_json"}
        return error_response(400, invalid), "malformed_json"
    fields = sorted({".".join(str(p) for p in e.get("loc", ())) for e in errors})[:10]
    if any(e.get("type") in _RANGE_ERRORS for e in errors):
        out_of_range = {"error": "invalid_request", "reason": "number_out_of_range",
                        "error_description": "out of range: " + clean_text(", ".join(fields))}
        return error_response(400, out_of_range), "number_out_of_range"
    body: dict[str, Any] = {
        "error": "invalid_request", "reason": "validation_failed",
        "error_description": "invalid or missing: " + clean_text(", ".join(fields)),
        "fields": [{"loc": list(e.get("loc", ())), "type": e.get("type")} for e in errors[:10]],
    }
    return error_response(422, body), "validation_failed"


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                           "finite_number", "int_parsing_size"})

# FastAPI raises a 400 HTTPException when a declared-JSON body cannot be parsed at all (e.g.
# nesting too deep for the parser).
_HTTP_REASONS = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed",
                 413: "body_too_large"}


def http_error_response(exc: HTTPException) -> tuple[Response, str]:
    reason = _HTTP_REASONS.get(exc.status_code, "invalid_request")
    error = "server_error" if exc.status_code >= 500 else "invalid_request"
    body = {"error": error, "error_description": clean_text(str(exc.detail)), "reason": reason}
    return error_response(exc.status_code, body, exc.headers), reason
