"""What a run is: its identity, where it came from, its status, and its event log.

A run starts ``pending``, becomes ``running`` once its root grant is obtained, and ends in exactly
one terminal status (the first one recorded wins). Events are numbered per run (``seq`` from 1);
each one's detail is the typed model of its kind (:mod:`orchestrator.runs._events`) and never
holds a token: anything shaped like a raw JWT is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.audit import contains_raw_jwt
from orchestrator.errors import InfraBotError
from orchestrator.identity import unverified_payload
from orchestrator.runs._events import BranchTaken, EventDetail, HandedOff, Started, TerminalStatus

EventKind = str  # one of EVENT_KINDS: the tags of the union EventDetail
RunStatus = Literal["pending", "running", "succeeded", "denied", "failed", "expired"]
Mode = Literal["delegated", "static"]

STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
TERMINAL_STATUSES: frozenset[str] = frozenset(get_args(TerminalStatus))


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
    """One entry of a run's log. ``agent`` is None for the orchestrator's own events. ``kind``
    is its detail's: given a detail model it may be left out; given a stored detail (a mapping,
    which holds no kind) it says which model the detail must validate as."""

    run_id: str
    seq: int = Field(ge=1)
    time: datetime
    kind: EventKind
    agent: str | None = None
    detail: EventDetail

    @model_validator(mode="before")
    @classmethod
    def _tag(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        detail, kind = data.get("detail"), data.get("kind")
        if isinstance(detail, Mapping) and isinstance(kind, str):
            return {**data, "detail": {**detail, "kind": kind}}
        if isinstance(detail, BaseModel) and kind is None:
            return {**data, "kind": getattr(detail, "kind", None)}
        return data

    @model_validator(mode="after")
    def _same_kind(self) -> RunEvent:
        if self.detail.kind != self.kind:
            raise ValueError(f"a run event of kind {self.kind!r} cannot hold a "
                             f"{self.detail.kind!r} detail")
        return self

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

    @property
    def trace_id(self) -> str | None:
        """The run's OpenTelemetry trace (docs/tracing.md), as its start recorded it."""
        started = self._started()
        return started.trace_id if started else None

    @property
    def idp(self) -> str | None:
        """The identity provider that vouched for the run's user (a ``user_request`` run's,
        docs/federation.md), as its start recorded it."""
        started = self._started()
        return started.idp if started else None

    def _started(self) -> Started | None:
        return next((e.detail for e in self.events if isinstance(e.detail, Started)), None)

    @property
    def branches(self) -> dict[str, tuple[str, ...]]:
        """Each branch of the run's fan-outs as it ran, by its head (the agent the fork handed
        off to): the head, then each agent its sub-chain handed off to, in order."""
        forks = {e.agent for e in self.events
                 if isinstance(e.detail, BranchTaken) and e.detail.join is not None}
        heads = [t for e in self.events if isinstance(e.detail, BranchTaken)
                 and e.detail.join is not None for t in e.detail.to]
        onward: dict[str, str] = {}  # a branch's agent -> the one it handed off to
        for e in self.events:
            if isinstance(e.detail, HandedOff) and e.agent is not None and e.agent not in forks:
                onward.setdefault(e.agent, e.detail.to)
        out: dict[str, tuple[str, ...]] = {}
        for head in heads:
            chain = [head]
            while chain[-1] in onward and onward[chain[-1]] not in chain:
                chain.append(onward[chain[-1]])
            out[head] = tuple(chain)
        return out

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


def check_text(name: str, value: str | None) -> None:
    if value is not None and contains_raw_jwt(value):
        raise ValueError(f"{name} looks like a raw JWT; runs never store tokens")

