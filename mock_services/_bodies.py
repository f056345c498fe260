"""A request's body, read and parsed once for every mock service, and the answers to what does
not parse or validate: bounded size (413) and time (408 ``body_timeout`` when the whole body has
not arrived within :data:`orchestrator._bodies.BODY_DEADLINE_SECONDS`), a client that closes
the connection mid-body (recorded 499 ``client_disconnected``: no one is left to answer), JSON
by content type with bounded numbers (no ``NaN``, no 10,000-digit integers: 400
``number_out_of_range``), a query parameter the route takes once sent twice (422
``repeated_parameter``), FastAPI's validation and HTTP errors in the one error shape
(``error``, ``error_description``, ``reason``)."""

from __future__ import annotations

import email.message
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.params import Query
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mock_services._bearer import ApiError, error_response
from orchestrator._bodies import read_body
from orchestrator.catalog import Action, clean_text
from orchestrator.errors import BodyTimeout, BodyTooLarge, ClientDisconnected

MAX_BODY_BYTES = 64 * 1024


async def bounded_body(request: Request) -> bytes:
    """The body, read by :func:`orchestrator._bodies.read_body` up to :data:`MAX_BODY_BYTES`;
    kept on the request so the handler reads the same bytes. Its refusals are answered as
    :class:`ApiError` with their own status, reason and description (413 ``body_too_large``,
    408 ``body_timeout``, 499 ``client_disconnected``)."""
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except (BodyTooLarge, BodyTimeout, ClientDisconnected) as exc:
        raise ApiError(exc.status, exc.reason, exc.message) from None
    request._body = body  # Starlette's cache: FastAPI's body parsing reads it from here
    return body


@dataclass(frozen=True)
class RouteInput:
    """What a route reads of a request, checked before the target check: the query parameters
    it takes one value of (``single``; one sent twice is 422 ``repeated_parameter``: which value
    counts is never guessed), and, when its target is named in the body, the validation of the
    handler's own body field (``validate``): a body of the wrong shape names no target, and is
    answered as the handler would answer it (422 ``validation_failed``), not as a 403."""

    single: frozenset[str] = frozenset()
    validate: Callable[..., tuple[Any, list[dict[str, Any]]]] | None = None

    @classmethod
    def of(cls, route: APIRoute, actions: Sequence[Action]) -> RouteInput:
        fields = [f for f in get_flat_params(route.dependant) if isinstance(f.field_info, Query)]
        many = {f.alias for f in fields if _is_list(f.field_info.annotation)}
        wire = {w for action in actions for _, w in action.query}
        named = wire | {f.alias for f in fields}
        in_body = any(f not in wire and f not in a.path_params
                      for a in actions for f in a.target.fields)
        body = route.body_field if in_body else None
        return cls(frozenset(named - many), body.validate if body is not None else None)

    def check_query(self, request: Request) -> None:
        for name in sorted(self.single):
            if len(request.query_params.getlist(name)) > 1:
                raise ApiError(422, "repeated_parameter",
                               f"query parameter {clean_text(name)!r} must be sent at most once")

    def check_body(self, parsed: Any, body: bytes) -> None:
        """FastAPI's own validation of what it would read: the parsed JSON, else the bytes."""
        if self.validate is None:
            return
        _, errors = self.validate(parsed if parsed is not None else (body or None),
                                  loc=("body",))
        if errors:
            raise RequestValidationError(errors)


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_is_list(a) for a in get_args(annotation))
    return (get_origin(annotation) or annotation) in (list, tuple, set, frozenset)


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
