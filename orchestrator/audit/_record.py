"""The audit record: what a service or the authorization server says happened.

A record names who acted (``performed_by``), for whom (``on_behalf_of``), the full delegation
chain, what was asked and what was answered. It never holds a token: every string in it is
checked, and anything shaped like a raw JWT is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator._raw_jwt import contains_raw_jwt
from orchestrator.identity import AccessClaims

Decision = Literal["allow", "deny"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(value: datetime) -> str:
    """The stored, hashed and sortable form of a time: UTC, microseconds, ``Z``.

    Fixed width, so text order is time order. Naive datetimes are refused.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


class AuditRecord(BaseModel):
    """One structured audit event. Frozen; inputs never echo into validation errors.

    Any string anywhere in a record that looks like a raw JWT is refused (``ValueError``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    time: datetime
    service: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=128)
    resource: str = Field(max_length=512)
    decision: Decision
    reason: str = Field(min_length=1, max_length=64)
    performed_by: str | None = Field(None, max_length=128)
    on_behalf_of: str | None = Field(None, max_length=128)
    chain: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    context: dict[str, str] = Field(default_factory=dict)
    jti: str | None = Field(None, max_length=128)
    run_id: str | None = Field(None, max_length=128)
    request_id: str | None = Field(None, max_length=128)
    status: int | None = Field(None, ge=100, le=599)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("time must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    @model_validator(mode="before")
    @classmethod
    def _no_raw_token(cls, data: Any) -> Any:
        """Checked before any other rule, so a token is always refused as a token."""
        if isinstance(data, dict):
            for name, value in data.items():
                if any(contains_raw_jwt(text) for text in _strings(value)):
                    raise ValueError(
                        f"audit field {name!r} looks like a raw JWT; audit never stores tokens"
                    )
        return data

    @classmethod
    def of_claims(cls, claims: AccessClaims | None, *, time: datetime, service: str,
                  action: str, resource: str, decision: Decision, reason: str,
                  performed_by: str | None, on_behalf_of: str | None = None,
                  context: dict[str, str] | None = None, request_id: str | None = None,
                  status: int | None = None) -> AuditRecord:
        """The one way a record is built from a decision on a token: for whom, the chain, the
        scopes, the context, the ``jti`` and the run come from ``claims``, which the verifier
        checked (None when no token was verified: then ``on_behalf_of`` may name the user
        asked for). ``context`` adds entries to the claims' context."""
        return cls(
            time=time, service=service, action=action, resource=resource, decision=decision,
            reason=reason, performed_by=performed_by,
            on_behalf_of=claims.sub if claims else on_behalf_of,
            chain=tuple(claims.chain()) if claims else (),
            scopes=tuple(sorted(claims.scopes)) if claims else (),
            context={**(claims.ctx.model_dump() if claims else {}), **(context or {})},
            jti=claims.jti if claims else None, run_id=claims.ctx.run_id if claims else None,
            request_id=request_id, status=status)

    @property
    def principal(self) -> str | None:
        """For whom, as shown to a person: ``user:sam (via https://idp.example/realms/acme)``
        when the run was rooted in the user's own identity provider (``context.idp``)."""
        idp = self.context.get("idp")
        if self.on_behalf_of is None or not idp:
            return self.on_behalf_of
        return f"{self.on_behalf_of} (via {idp})"

    def content(self) -> dict[str, Any]:
        """The record content as JSON values: the exact form that is stored and hashed."""
        return {
            "time": format_time(self.time),
            "service": self.service,
            "action": self.action,
            "resource": self.resource,
            "decision": self.decision,
            "reason": self.reason,
            "performed_by": self.performed_by,
            "on_behalf_of": self.on_behalf_of,
            "chain": list(self.chain),
            "scopes": list(self.scopes),
            "context": dict(self.context),
            "jti": self.jti,
            "run_id": self.run_id,
            "request_id": self.request_id,
            "status": self.status,
        }


CONTENT_FIELDS: tuple[str, ...] = tuple(AuditRecord.model_fields)


class StoredRecord(AuditRecord):
    """A record as the store returns it: the content plus its place in its writer's hash chain."""

    id: int
    writer: str
    seq: int = Field(ge=1)
    prev_hash: str
    hash: str

    @property
    def record(self) -> AuditRecord:
        """The content alone, as it was appended."""
        return AuditRecord.model_validate(self.content())

    def to_json(self) -> dict[str, Any]:
        """Content plus chain fields as JSON values (the JSON lines export form)."""
        chain = {"writer": self.writer, "seq": self.seq, "prev_hash": self.prev_hash}
        return {"id": self.id, **self.content(), **chain, "hash": self.hash}


# Built once: ``json.dumps`` with options builds an encoder per call (the same text either way).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the byte-stable form that is hashed."""
    return _CANONICAL(value)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a field value: itself, the items of a sequence, the keys and values of a
    mapping."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
