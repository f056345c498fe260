"""One request at a service as its audit record says it: :class:`Call`, filled in as the request
proceeds (:mod:`mock_services._enforcement`), and the record made of it (:func:`record_of`),
redacted rather than lost when the request's own values make it invalid."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from mock_services._access import Caller
from orchestrator.audit import AuditRecord
from orchestrator.catalog import REDACTED, Action, clean_text
from orchestrator.identity import AccessClaims

log = logging.getLogger("mock_services")
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Call:
    """What the audit record of one request will say, filled in as the request proceeds."""

    action: Action
    resource: str
    request_id: str
    claims: AccessClaims | None = None
    static: Caller | None = None
    target: dict[str, str] | None = None  # a refused target's attributes, for the record
    audited: Callable[[], Awaitable[None]] | None = None  # to call once this record is written


def request_id_of(request: Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) and clean_text(given) == given else uuid.uuid4().hex


def record_of(service: str, call: Call, status: int, reason: str, now: float) -> AuditRecord:
    """The request's record, or, if values from the request make it invalid, the same with its
    resource and refused target redacted (``ValueError`` if even that is invalid: a 503)."""
    try:
        return _record(service, call, status, reason, now)
    except ValueError:  # pydantic's ValidationError is one; it never echoes the input
        log.warning("audit_record_invalid", extra={"service": service})
    return _record(service, replace(call, resource=REDACTED, target=None), status, reason, now)


def _record(service: str, call: Call, status: int, reason: str, now: float) -> AuditRecord:
    allowed, claims, static = status < 400, call.claims, call.static
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(now, UTC), "service": service, "status": status,
        "action": call.action.audit_action, "resource": call.resource,
        "decision": "allow" if allowed else "deny", "request_id": call.request_id,
        "reason": reason if not allowed or reason == "idempotent_replay" else "ok"}
    if static is not None:  # the baseline: a service account acting for nobody
        return AuditRecord(performed_by=static.actor, scopes=static.scopes, **fields)
    return AuditRecord.of_claims(claims, performed_by=claims.current_actor if claims else None,
                                 context=call.target, **fields)
