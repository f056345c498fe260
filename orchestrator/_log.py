"""Structured logging: snake_case events, JSON or console, and a processor that redacts tokens.

Nothing a token or key could hide in survives: any string value that looks like a compact JWS or a
PEM block is replaced before rendering, whatever key it sits under. An exception is rendered as
plain traceback text before that redaction, so the redaction sees it too, and never with each
frame's local variables (the console renderer's default with Rich installed), which would print
whatever a frame held: settings with a broker password in their URL, the static token, tokens.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Annotated, Any

import structlog
from pydantic import AfterValidator

from orchestrator._raw_jwt import redact_raw_jwts

_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
_SECRET_KEYS = frozenset({"token", "access_token", "subject_token", "actor_token", "assertion",
                          "client_assertion", "authorization", "secret", "password"})


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return _PEM.sub("[redacted key]", redact_raw_jwts(value, "[redacted token]"))
    if isinstance(value, dict):
        return {k: "[redacted]" if str(k).lower() in _SECRET_KEYS else redact(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def redact_processor(_logger: Any, _name: str,
                     event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return redact(dict(event))  # type: ignore[no-any-return]


def level_name(level: str) -> str:
    """``level`` as the logging module names it (any case in, capitals out); ValueError unless
    it is a level's name (numbers are not)."""
    if level.upper() not in logging.getLevelNamesMapping():
        raise ValueError("not a log level: use DEBUG, INFO, WARNING, ERROR or CRITICAL (any "
                         "case)")
    return level.upper()


# The INFRABOT_LOG_LEVEL setting: a bad one is refused at start, never taken for INFO.
LogLevel = Annotated[str, AfterValidator(level_name)]


def configure(level: str = "INFO", *, json: bool = False) -> None:
    """Configure structlog once per process; logs go to stderr at ``level`` (a level's name in
    any case; ValueError for anything else)."""
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(
                         colors=False, exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # text (no locals), then redacted
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level_name(level)]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
