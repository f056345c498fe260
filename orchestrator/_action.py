"""What one operation of a mock service is: an :class:`Action` and the :class:`Target` it acts on
(the catalogue, :mod:`orchestrator.catalog`, lists them by name)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.identity import is_write

Params = Mapping[str, Any]
FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?::path)?\}")
LISTING = "listing"


@dataclass(frozen=True)
class Target:
    """How an action finds the resource it acts on: a ``kind`` its service resolves to owning
    attributes, from the request ``fields`` that name it (path or query parameters, or dotted
    JSON body fields). ``LISTING`` names no resource: the handler shows only what the token's
    context may see."""

    kind: str
    fields: tuple[str, ...] = ()

    @property
    def listing(self) -> bool:
        return self.kind == LISTING

    def values(self, params: Mapping[str, object], body: object) -> tuple[object, ...]:
        """The raw value of each field in this request (``None`` where absent)."""
        return tuple(params[f] if f in params else lookup(body, f) for f in self.fields)



@dataclass(frozen=True)
class Action:
    name: str
    service: str
    method: str
    path: str
    scope: str
    audit_action: str
    resource: str
    summary: str
    target: Target
    query: tuple[tuple[str, str], ...] = ()  # (parameter name, wire name)
    body: Callable[[Params], dict[str, Any]] | None = None
    match: tuple[str, str] | None = None  # (dotted body field, value) on a shared route

    @property
    def mutating(self) -> bool:
        """Whether the action changes state (its scope is a write); it honours Idempotency-Key."""
        return is_write(self.scope)

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(m.group(1) for m in FIELD.finditer(self.path))

    def matches(self, body: object) -> bool:
        return self.match is None or lookup(body, self.match[0]) == self.match[1]



def lookup(data: object, dotted: str) -> object:
    """``data["a"]["b"]`` for ``"a.b"``, or None where anything along the way is missing."""
    for part in dotted.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data
