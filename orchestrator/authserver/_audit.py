"""What the authorization server records of each decision: one :class:`Auditor`, whose records
are built by :meth:`AuditRecord.of_claims` from the claims the verifier checked, never from the
request (what a client sent is recorded only as a short printable text that is not a token)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.audit import AuditRecord, Decision, contains_raw_jwt
from orchestrator.identity import AccessClaims

# The action of a ``/token`` request's record refused before its client was authenticated.
TOKEN_ACTION = "token"
# The action of ``POST /dpop_keys``'s records: a registration, or its refusal.
DPOP_KEY_ACTION = "dpop_key"
# The actions of ``/introspect``'s records and of ``/revoke``'s and ``/revocations``'.
INTROSPECT_ACTION = "introspect"
REVOKE_ACTION = "revoke"


class AuditSink(Protocol):
    def append(self, record: AuditRecord) -> object: ...
    def query(self, *, run_id: str | None = None) -> list[Any]: ...


class Auditor:
    """Appends the server's records to the sink ``sink()`` returns (None: nothing recorded)."""

    def __init__(self, sink: Callable[[], AuditSink | None], clock: Callable[[], float]) -> None:
        self._sink = sink
        self._clock = clock

    def record(self, action: str, decision: Decision, reason: str, client: str | None,
               resource: str, claims: AccessClaims | None, status: int, *,
               user: str | None = None, run_id: str | None = None) -> None:
        """One record. ``run_id``: the run a refused request named in the context of an
        assertion that verified (a root grant's), recorded when no ``claims`` say it."""
        sink = self._sink()
        if sink is None:
            return
        record = AuditRecord.of_claims(
            claims, time=datetime.fromtimestamp(self._clock(), UTC), service="authserver",
            action=action, resource=audit_text(resource) or "", decision=decision,
            reason=reason, performed_by=client, on_behalf_of=audit_text(user, 128),
            status=status)
        if claims is None and run_id is not None and audit_text(run_id, 128) == run_id:
            record = AuditRecord.model_validate({**record.model_dump(), "run_id": run_id})
        sink.append(record)

    def refused(self, action: str, client: str | None, target: str, exc: Exception,
                subject: AccessClaims | None, *, user: str | None = None,
                run_id: str | None = None) -> None:
        """A refusal, with the status and reason of the error it was answered with."""
        status = getattr(exc, "status", 400)
        reason = getattr(exc, "reason", "error")
        self.record(action, "deny", reason, client, target, subject, status, user=user,
                    run_id=run_id)

    def refused_request(self, exc: Exception, *, target: str = "",
                        action: str = TOKEN_ACTION) -> None:
        """A request (to ``/token``, or ``action``'s endpoint) refused before its client was
        authenticated."""
        self.refused(action, None, target, exc, None)


_AUDIT_TEXT = re.compile(r"[\x21-\x7e]+")


def audit_text(value: str | None, limit: int = 256) -> str | None:
    """Client-supplied text fit for an audit record: short printable ASCII that is not a token.

    Anything else (a pasted token, a huge or binary value) is recorded as a placeholder, never
    truncated, so no part of it is stored and the record is always valid.
    """
    if not value:
        return value
    if len(value) > limit or not _AUDIT_TEXT.fullmatch(value) or contains_raw_jwt(value):
        return "[unrecognised]"
    return value
