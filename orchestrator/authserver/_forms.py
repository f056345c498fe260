"""OAuth form parameters read once at the edge: each at most once (RFC 6749 section 3.2),
bounded in size, into frozen typed requests, one per endpoint.

A parameter that cannot be read (repeated, too large) is not refused at once: its :class:`Param`
keeps the refusal and raises it where the endpoint first needs the value, so a request is
refused for what an endpoint checks first (its client authentication before its scope, say),
as it always was.

The body itself is read by :func:`read_form`: bounded in size and in time
(:mod:`orchestrator._bodies`), strictly UTF-8 (raw or percent-encoded), and refused with a reason
when it cannot be read (:func:`one_client_auth` then checks the request uses one client
authentication method).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Self
from urllib.parse import parse_qs

from starlette.requests import Request

from orchestrator import _bodies
from orchestrator.errors import BodyTimeout, BodyTooLarge, ClientDisconnected, InvalidRequest

Form = Mapping[str, Sequence[str]]
MAX_PARAM_BYTES = 16384
MAX_BODY_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, list[str]]:
    """The request's form, or :class:`InvalidRequest` with why it cannot be read: its body is
    read by :func:`orchestrator._bodies.read_body`, whose refusals are answered here as this
    server always answered them (a body too large is 400 ``body_too_large``, one not whole by
    the deadline 408 ``body_timeout``); a client that disconnected mid-body is
    ``client_disconnected`` (for the audit record: no answer reaches it)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise InvalidRequest("body must be application/x-www-form-urlencoded",
                             reason="unsupported_content_type")
    try:
        body = await _bodies.read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise InvalidRequest("request body too large", reason="body_too_large") from None
    except BodyTimeout:
        raise BodyTimeout("request body not received within "
                          f"{_bodies.BODY_DEADLINE_SECONDS:g} seconds") from None
    except ClientDisconnected:
        raise ClientDisconnected("client disconnected before its body was read") from None
    try:  # errors="strict": a percent-encoded byte that is not UTF-8 is refused as a raw one
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        max_num_fields=64, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("body is not a valid form", reason="malformed_form") from exc


def parameter_refusal(first: Mapping[str, Any]) -> InvalidRequest:
    """A query parameter FastAPI did not take (its first validation error): 400
    ``invalid_parameter``, naming it and whether it is missing or not valid."""
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    problem = "is required" if first.get("type") == "missing" else "is invalid"
    return InvalidRequest(f"{where} {problem}", reason="invalid_parameter")


def one_client_auth(form: Form, authorization: Sequence[str]) -> None:
    """RFC 6749 section 2.3: a client uses one authentication method per request. Counted: an
    ``Authorization`` header of any scheme (client_secret_basic, or a credential this server
    does not take), a ``client_secret`` (client_secret_post), a ``client_assertion`` or its
    type (private_key_jwt); two or more is :class:`InvalidRequest` (``multiple_client_auth``)."""
    methods = (bool(authorization), "client_secret" in form,
               "client_assertion" in form or "client_assertion_type" in form)
    if sum(methods) > 1:
        raise InvalidRequest("a client must use only one authentication method (RFC 6749 "
                             "section 2.3): send one of an Authorization header, a "
                             "client_secret or a client_assertion", reason="multiple_client_auth")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter as the form gave it: its value (None when absent or empty), or why it
    cannot be read; ``first`` is its first value as sent, for an audit record only."""

    name: str
    value: str | None
    refusal: tuple[str, str] | None = None  # (reason, message)
    first: str = ""

    @classmethod
    def read(cls, form: Form, name: str) -> Param:
        values = form.get(name) or ()
        first = values[0] if values else ""
        if len(values) > 1:
            return cls(name, None, ("repeated_parameter", f"parameter {name!r} is repeated"),
                       first)
        if not first:
            return cls(name, None, None, first)
        if len(first) > MAX_PARAM_BYTES:
            return cls(name, None, ("parameter_too_large", f"parameter {name!r} is too large"),
                       first)
        return cls(name, first, None, first)

    def get(self) -> str | None:
        """The value, None if absent; :class:`InvalidRequest` if it cannot be read."""
        if self.refusal is not None:
            raise InvalidRequest(self.refusal[1], reason=self.refusal[0])
        return self.value

    def require(self) -> str:
        """The value; :class:`InvalidRequest` if absent or if it cannot be read."""
        value = self.get()
        if value is None:
            raise InvalidRequest(f"parameter {self.name!r} is required",
                                 reason="missing_parameter")
        return value


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """``private_key_jwt`` client authentication (RFC 7523 section 2.2)."""

    assertion_type: Param
    assertion: Param
    client_id: Param

    @classmethod
    def read(cls, form: Form) -> ClientAuth:
        return cls(Param.read(form, "client_assertion_type"),
                   Param.read(form, "client_assertion"), Param.read(form, "client_id"))


class _Request:
    """A request read from a form: its ``client`` (:class:`ClientAuth`), and every other field
    the parameter of its name."""

    @classmethod
    def read(cls, form: Form) -> Self:
        return cls(**{f.name: ClientAuth.read(form) if f.name == "client"
                      else Param.read(form, f.name)
                      for f in fields(cls)})  # type: ignore[arg-type]  # a dataclass


@dataclass(frozen=True, slots=True)
class TokenRequest(_Request):
    """A request to the token endpoint: RFC 8693 token exchange or the RFC 7523 grant."""

    grant_type: Param
    client: ClientAuth
    subject_token: Param
    subject_token_type: Param
    actor_token: Param
    actor_token_type: Param
    requested_token_type: Param
    scope: Param
    resource: Param
    audience: Param
    assertion: Param
    delegation_record: Param  # the delegator's signed record of a hand-off (issue 16)
    joined_tokens: Param  # space-separated: a join's branch tokens (docs/graphs.md)

    @property
    def target(self) -> str:
        """What the request names as its target, as sent, for the audit record only."""
        return self.resource.first or self.audience.first


@dataclass(frozen=True, slots=True)
class TokenRequestOf(_Request):
    """A request about one token: RFC 7662 introspection or RFC 7009 revocation."""

    client: ClientAuth
    token: Param
    token_type_hint: Param


@dataclass(frozen=True, slots=True)
class RevokeByRequest(_Request):
    """A trusted client's revocation by ``jti``, ``user``, ``run_id`` or ``jkt``."""

    client: ClientAuth
    jti: Param
    user: Param
    run_id: Param
    jkt: Param  # every token bound to this DPoP key (its RFC 7638 thumbprint)
