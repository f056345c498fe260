"""RFC 6750 at the edge: where the bearer token is found, and how a refusal is answered.

Only the ``Authorization: Bearer <token>`` header is accepted. A token in the query string or a
form body (RFC 6750 sections 2.2 and 2.3, which leak tokens into logs) is refused with
``invalid_request``, as is more than one credential. Refusals carry a ``WWW-Authenticate``
challenge: a bare ``Bearer realm="<service>"`` when no credential was sent (section 3.1: no
error code then), ``error="invalid_token"`` on 401, ``error="insufficient_scope"`` with the
needed ``scope`` on 403, ``error="invalid_request"`` on 400. Bodies come from
:meth:`~orchestrator.errors.OAuthError.body`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from orchestrator.errors import InsufficientScope, InvalidRequest, InvalidToken, OAuthError

_TOKEN68 = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
# RFC 6750 section 3: error_description and scope values use %x20-21 / %x23-5B / %x5D-7E.
_NOT_QUOTABLE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


class ErrorBody(BaseModel):
    """Every error answer: an RFC 6749 error code, a description and our reason code."""

    error: str
    error_description: str
    reason: str


class MissingToken(InvalidToken):
    """No credential at all: a bare challenge, no error code in the header (RFC 6750 3.1)."""

    reason = "missing_token"


class ApiError(Exception):
    """A refusal by a service handler (not found, conflict ...), answered as an error body."""

    def __init__(self, status: int, reason: str, message: str,
                 error: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.error = status, reason, message, error

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.message, "reason": self.reason}


def bearer_token(authorization: Sequence[str], query_tokens: Sequence[str],
                 form_tokens: Sequence[str]) -> str:
    """The one bearer token of a request, or the RFC 6750 refusal."""
    count = len(authorization) + len(query_tokens) + len(form_tokens)
    if count > 1:
        raise InvalidRequest("more than one credential in the request",
                             reason="multiple_credentials")
    if query_tokens or form_tokens:
        raise InvalidRequest("send the access token in the Authorization header only",
                             reason="unsupported_token_location")
    if not authorization:
        raise MissingToken("an access token is required")
    scheme, _, token = authorization[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not _TOKEN68.match(token):
        raise InvalidRequest("the Authorization header must be 'Bearer <token>'",
                             reason="malformed_authorization")
    return token


def form_tokens(content_type: str | None, body: bytes) -> list[str]:
    """``access_token`` values in a form-encoded body (RFC 6750 section 2.2)."""
    if not content_type or not content_type.lower().startswith("application/x-www-form-urlencoded"):
        return []

    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    return fields.get("access_token", [])


def _quoted(text: str) -> str:
    return '"' + _NOT_QUOTABLE.sub("'", text)[:200] + '"'


def challenge(realm: str, exc: OAuthError, scope: str | None = None) -> str:
    """The ``WWW-Authenticate`` value for ``exc``."""
    params = [f"realm={_quoted(realm)}"]
    if not isinstance(exc, MissingToken):
        params += [f"error={_quoted(exc.code)}", f"error_description={_quoted(exc.message)}"]
    if isinstance(exc, InsufficientScope) and scope:
        params.append(f"scope={_quoted(scope)}")
    return "Bearer " + ", ".join(params)


def oauth_response(realm: str, exc: OAuthError, scope: str | None) -> JSONResponse:
    headers = {"WWW-Authenticate": challenge(realm, exc, scope), "Cache-Control": "no-store"}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def error_response(status: int, body: Mapping[str, Any],
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid_request: malformed credentials or input"},
    401: {"model": ErrorBody, "description": "invalid_token (WWW-Authenticate: Bearer ...)"},
    403: {"model": ErrorBody, "description": "insufficient_scope: scope, context or directory"},
    404: {"model": ErrorBody, "description": "not_found: the resource the path names"},
    409: {"model": ErrorBody, "description": "the resource's state forbids the change"},
    413: {"model": ErrorBody, "description": "body_too_large"},
    422: {"model": ErrorBody, "description": "validation failed or Idempotency-Key reused"},
    503: {"model": ErrorBody, "description": "temporarily_unavailable: keys or registry down"},
}
