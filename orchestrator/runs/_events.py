"""What each run event says: one frozen model per event kind, in one discriminated union.

An event's kind is its own column of the run log; its detail is stored as JSON *without* the kind
(the format the log always had). The models carry the kind as their tag, excluded from every
dump, so a detail is checked against its kind's model when it is written and again when it is
read (:func:`detail_json`, :func:`read_detail`); a detail that is not one of these models, or
does not validate, is refused with :class:`EventDetailError` (``bad_event_detail``).

A detail never holds a token (anything shaped like a raw JWT is refused) and its JSON is at most
:data:`MAX_DETAIL_BYTES`. A new kind is one model here and one line in :data:`EventDetail`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from orchestrator.audit import contains_raw_jwt
from orchestrator.errors import InfraBotError

TerminalStatus = Literal["succeeded", "denied", "failed", "expired"]
MAX_DETAIL_BYTES = 16 * 1024
HAND_OFF = "hand-off to "  # what an exchange for a hand-off is ``for``: "hand-off to <agent>"


class EventDetailError(InfraBotError, ValueError):
    """A run event's detail is not the model of its kind (written or read), is not JSON, is too
    large, or holds something shaped like a raw JWT."""

    reason = "bad_event_detail"


class _Detail(BaseModel):
    """The detail of one kind of run event. ``kind`` is the union's tag, never dumped: the run
    log keeps it in a column of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    @model_serializer(mode="wrap")
    def _sorted(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped with its keys sorted, as the run log stores it and always showed it."""
        return dict(sorted(handler(self).items()))


class Timed(_Detail):
    """A detail of something that took time: ``ms``, its milliseconds."""

    ms: int = Field(ge=0)


class Started(_Detail):
    """The orchestrator took a CI event and created the run."""

    kind: Literal["started"] = Field("started", exclude=True)
    event: str
    delivery: str
    user: str
    trigger: str
    environment: str
    service: str
    commit: str
    mode: str
    idp: str | None = None  # the identity provider of a user_request run (docs/federation.md)
    trace_id: str | None = Field(None, pattern="^[0-9a-f]{32}$")  # docs/tracing.md

    @model_serializer(mode="wrap")
    def _sorted(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """As every detail, without the fields a run does not have (a CI run has no idp)."""
        return dict(sorted((k, v) for k, v in handler(self).items()
                           if v is not None or k not in ("idp", "trace_id")))


class RootGranted(_Detail):
    """The run's root token was issued: what the workflow needs, the user holds and was granted."""

    kind: Literal["root_granted"] = Field("root_granted", exclude=True)
    user_permissions: list[str]
    needed: list[str]
    granted: list[str]
    dropped: list[str]
    may_act: str
    expires_in: int | None
    claims: dict[str, Any] | None  # the token's claims, read for display only; never the token


class RootDenied(_Detail):
    """The authorization server refused the root grant (RFC error code and our reason)."""

    kind: Literal["root_denied"] = Field("root_denied", exclude=True)
    needed: list[str]
    error: str
    reason: str


class _Exchange(Timed):
    for_: str = Field(alias="for")  # a workflow action, or "hand-off to <agent>"
    requested: str | None

    @property
    def hand_off(self) -> str | None:
        """The agent this exchange hands off to; None for an exchange for a step's call."""
        return self.for_.removeprefix(HAND_OFF) if self.for_.startswith(HAND_OFF) else None


class Exchanged(_Exchange):
    """An agent exchanged its token (RFC 8693) for a step's call or for a hand-off."""

    kind: Literal["exchanged"] = Field("exchanged", exclude=True)
    granted: str | None
    expires_in: int | None
    claims: dict[str, Any] | None  # the token's claims, read for display only; never the token
    ahead: bool = Field(False, exclude_if=lambda v: not v)  # asked during the call before


class ExchangeDenied(_Exchange):
    """The authorization server refused an agent's exchange."""

    kind: Literal["exchange_denied"] = Field("exchange_denied", exclude=True)
    error: str
    reason: str


class _Call(Timed):
    service: str
    action: str  # as the service audits it
    method: str
    path: str
    status: int
    reason: str
    replayed: bool  # the service answered from its idempotency record


class Called(_Call):
    """An agent called a service, which acted or answered (below 400). ``step_id`` and
    ``result``: a named step's answer, read by later conditions and ``${steps...}`` params
    (docs/graphs.md)."""

    kind: Literal["called"] = Field("called", exclude=True)
    step_id: str | None = None
    result: Any = None

    @model_serializer(mode="wrap")
    def _sorted(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """As every detail, without a step name and answer it does not have (the format
        calls always had)."""
        out = handler(self)
        if out.get("step_id") is None:
            out.pop("step_id", None)
            out.pop("result", None)
        return dict(sorted(out.items()))


class CallDenied(_Call):
    """An agent called a service, which refused (401/403: denied) or failed (another 4xx)."""

    kind: Literal["call_denied"] = Field("call_denied", exclude=True)


class HandedOff(_Detail):
    """An agent handed the run to the next agent, with a token holding ``scope``."""

    kind: Literal["handed_off"] = Field("handed_off", exclude=True)
    to: str
    scope: str | None


class StepSkipped(_Detail):
    """A step whose ``when:`` did not hold: not performed."""

    kind: Literal["step_skipped"] = Field("step_skipped", exclude=True)
    action: str
    when: str


class BranchTaken(_Detail):
    """The way on an agent took: its agents (a fan-out: several), its condition, its join."""

    kind: Literal["branch_taken"] = Field("branch_taken", exclude=True)
    to: list[str]
    when: str | None = None
    join: str | None = None


class BranchEnded(_Detail):
    """A fan-out's branch stopped: the join ends the run with it (docs/graphs.md)."""

    kind: Literal["branch_ended"] = Field("branch_ended", exclude=True)
    status: TerminalStatus
    reason: str


class Retrying(_Detail):
    """A hop hit a transient fault and is retried (attempt ``attempt``) in ``in_seconds``."""

    kind: Literal["retrying"] = Field("retrying", exclude=True)
    reason: str
    attempt: int = Field(ge=1)
    in_seconds: float = Field(ge=0)


class Finished(_Detail):
    """The run's terminal status, written with it in one transaction."""

    kind: Literal["finished"] = Field("finished", exclude=True)
    status: TerminalStatus
    reason: str


EventDetail = Annotated[
    Started | RootGranted
    | RootDenied
    | Exchanged
    | ExchangeDenied
    | Called
    | CallDenied
    | HandedOff
    | StepSkipped
    | BranchTaken
    | BranchEnded
    | Retrying
    | Finished,
    Field(discriminator="kind"),
]
DENIALS = (RootDenied, ExchangeDenied, CallDenied)  # the events that end a run as refused

_ADAPTER: TypeAdapter[EventDetail] = TypeAdapter(EventDetail)
_MODELS: tuple[type[_Detail], ...] = get_args(get_args(EventDetail)[0])
EVENT_KINDS: frozenset[str] = frozenset(m.model_fields["kind"].default for m in _MODELS)


def parse_detail(kind: str, detail: object) -> EventDetail:
    """A stored detail (the JSON object, without its kind) as the model of ``kind``;
    :class:`EventDetailError` if it is not one."""
    if kind not in EVENT_KINDS:
        raise EventDetailError(f"unknown run event kind {kind!r}")
    if not isinstance(detail, dict):
        raise EventDetailError(f"{kind} event detail must be a JSON object")
    try:
        return _ADAPTER.validate_python({**detail, "kind": kind})
    except ValidationError as exc:  # its first error is the message
        raise EventDetailError(f"{kind} event detail does not validate: "
                               f"{_first_error(exc)}") from None


def read_detail(kind: str, text: str) -> EventDetail:
    """A detail as the run log stores it (its JSON) as the model of ``kind``;
    :class:`EventDetailError` if it is not JSON or not that model."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EventDetailError(f"detail is not JSON: {exc}") from exc
    return parse_detail(kind, data)


def detail_json(detail: object) -> str:
    """The detail as the run log stores it: its JSON without the kind, keys sorted. Refuses
    (:class:`EventDetailError`) anything but a detail model, what would not read back as its
    kind, a raw JWT anywhere in it, values that are not JSON and a detail over the size limit."""
    kind = getattr(detail, "kind", None)
    if not isinstance(detail, _Detail) or not isinstance(kind, str):
        raise EventDetailError(f"run event detail must be one of the event models, not "
                               f"{type(detail).__name__}")
    plain = detail.model_dump(warnings=False)  # an unvalidated model is refused below
    if any(contains_raw_jwt(text) for text in _strings(plain)):
        raise EventDetailError("event detail looks like a raw JWT; run events never store tokens")
    try:
        text = json.dumps(plain, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EventDetailError(f"event detail is not JSON: {exc}") from exc
    if len(text.encode()) > MAX_DETAIL_BYTES:
        raise EventDetailError(f"event detail is larger than {MAX_DETAIL_BYTES} bytes")
    read_detail(kind, text)  # what is stored reads back as its kind
    return text


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"][1:])  # [0] is the tag
    return f"{where}: {first['msg']}" if where else first["msg"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [s for item in value for s in _strings(item)]
    return []
