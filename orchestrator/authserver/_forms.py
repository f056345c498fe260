"""OAuth form parameters read once at the edge: each at most once (RFC 6749 section 3.2),
bounded in size, into frozen typed requests, one per endpoint.

A parameter that cannot be read (repeated, too large) is not refused at once: its :class:`Param`
keeps the refusal and raises it where the endpoint first needs the value, so a request is
refused for what an endpoint checks first (its client authentication before its scope, say),
as it always was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Self

from orchestrator.errors import InvalidRequest

Form = Mapping[str, Sequence[str]]
MAX_PARAM_BYTES = 16384


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
    """A trusted client's revocation by ``jti``, ``user`` or ``run_id``."""

    client: ClientAuth
    jti: Param
    user: Param
    run_id: Param
