"""What a run is: its identity, where it came from, its status, and its event log.

A run starts ``pending``, becomes ``running`` once its root grant is obtained, and ends in exactly
one terminal status (the first one recorded wins). Events are numbered per run (``seq`` from 1)
and never hold a token: details are checked and anything shaped like a raw JWT is refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from orchestrator.audit import contains_raw_jwt
from orchestrator.errors import InfraBotError
from orchestrator.identity import unverified_payload

EventKind = Literal[
    "started", "root_granted", "root_denied", "exchanged", "exchange_denied",
    "called", "call_denied", "handed_off", "retrying", "finished",
]
RunStatus = Literal["pending", "running", "succeeded", "denied", "failed", "expired"]
Mode = Literal["delegated", "static"]

EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))
STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "denied", "failed", "expired"})
MAX_DETAIL_BYTES = 16 * 1024


def shown_claims(token: object) -> dict[str, Any] | None:
    """What the run log shows of a token a run was just issued: its claims, read WITHOUT
    verification through the identity core's one unverified peek (display only, never a
    decision); None for anything that is not a token. The token itself is never recorded.
    Every claim is shown (ctx, ancestors, user_version, ...): none holds a secret."""
    return unverified_payload(token, max_bytes=_LARGEST_TOKEN)


_LARGEST_TOKEN = 64 * 1024  # the largest token a server may be set to accept (max_token_bytes)


class RunExists(InfraBotError):
    """A run with this id was already created."""

    reason = "run_exists"


class UnknownRun(InfraBotError, LookupError):
    """No run has this id."""

    reason = "unknown_run"


class RunOrigin(Protocol):
    """What a run is rooted in; :class:`orchestrator.ci.CIEvent` is one."""

    @property
    def user(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def repository(self) -> str: ...
    @property
    def commit(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def pr(self) -> int | None: ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunEvent(_Frozen):
    """One entry of a run's log. ``agent`` is None for the orchestrator's own events."""

    run_id: str
    seq: int = Field(ge=1)
    time: datetime
    kind: EventKind
    agent: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)


class Run(_Frozen):
    """A run as the store knows it, with its events in order."""

    run_id: str
    workflow: str
    user: str
    status: RunStatus
    reason: str | None = None
    trigger: str
    environment: str
    repository: str
    commit: str
    service: str
    pr: int | None = None
    mode: Mode = "delegated"
    created_at: datetime
    finished_at: datetime | None = None
    events: tuple[RunEvent, ...] = ()

    @field_validator("created_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented form
    @property
    def trace_id(self) -> str | None:
        """The run's OpenTelemetry trace (docs/tracing.md), as its start recorded it."""
        started = next((e for e in self.events if e.kind == "started"), None)
        value = started.detail.get("trace_id") if started else None
        return value if isinstance(value, str) else None

    @property
    def duration_ms(self) -> int | None:
        """Milliseconds from creation to the terminal status; None while the run is live."""
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.created_at).total_seconds() * 1000)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("run times must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def check_detail(detail: dict[str, Any]) -> str:
    """The detail as stored JSON; refuses raw JWTs, non-JSON values and oversized details."""
    if not isinstance(detail, dict):
        raise TypeError("event detail must be a dict")
    if any(contains_raw_jwt(text) for text in _strings(detail)):
        raise ValueError("event detail looks like a raw JWT; run events never store tokens")
    try:
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event detail is not JSON: {exc}") from exc
    if len(text.encode()) > MAX_DETAIL_BYTES:
        raise ValueError(f"event detail is larger than {MAX_DETAIL_BYTES} bytes")
    return text


def check_text(name: str, value: str | None) -> None:
    if value is not None and contains_raw_jwt(value):
        raise ValueError(f"{name} looks like a raw JWT; runs never store tokens")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    return []
