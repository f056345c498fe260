"""The one error-body shape of the webhook receiver, as every server here answers:
``{"error", "error_description", "reason"}`` (plus ``field`` where a payload field is wrong).

``error`` names the HTTP status (no OAuth code fits a signed delivery), ``reason`` is the specific
snake_case code, ``error_description`` a sentence for a person. A 500 says ``server_error``, the
RFC 6749 code the other servers answer for it too. Every refusal, unknown route and crash is
built here.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import InfraBotError, InternalError, TransientError

Answer = tuple[int, dict[str, Any]]

ERRORS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
          422: "unprocessable", 500: "server_error", 503: "temporarily_unavailable"}


def error_code(status: int) -> str:
    return ERRORS.get(status, f"http_{status}")


def error_answer(status: int, reason: str, description: str, **extra: Any) -> Answer:
    """The status and the body of one refusal."""
    body = {"error": error_code(status), "error_description": description, "reason": reason}
    return status, {**body, **extra}


class Refused(Exception):
    """Raised inside a receiver's handling to answer with one refusal (:func:`error_answer`)."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra

    def answer(self) -> Answer:
        return error_answer(self.status, self.reason, self.message, **self.extra)


def start_refusal(exc: Exception) -> Refused:
    """The refusal of a request whose run could not be started, ``exc`` what the start raised:
    503 with its reason for a transient fault (the sender may retry), 500 ``internal_error`` for
    a bug (an :class:`InternalError` or not the project's error), 422 with its reason otherwise.
    The body never names the run; :func:`stopped_run` is for the audit record."""
    if isinstance(exc, TransientError):
        return Refused(503, exc.reason, exc.message)
    if isinstance(exc, InfraBotError) and not isinstance(exc, InternalError):
        return Refused(422, exc.reason, exc.message)
    return Refused(500, "internal_error", "the run could not be started")


def stopped_run(exc: Exception) -> str | None:
    """The run a failed start had created (and ended ``failed``) before ``exc`` stopped it."""
    return exc.run_id if isinstance(exc, InfraBotError) else None
