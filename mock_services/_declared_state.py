"""The generic stateful mock behind a declared service: objects kept by collection and key.

A path's shape says what an operation does, whatever the service (docs/openapi-services.md):

* ``POST /channels`` (the path does not end in a parameter) creates an object in the collection
  ``/channels``; ``GET /channels`` lists it;
* ``GET``, ``PUT``, ``PATCH``, ``DELETE /channels/{channel}`` (the path ends in a parameter)
  read, replace (or create), merge into and delete the object ``channel`` of ``/channels``;
* a nested path is a collection of its own: ``POST /channels/C000001/messages`` creates in
  ``/channels/C000001/messages``.

Each object remembers the context that created it (the token's environment and repository), so
a later request naming it is checked against the caller's context, and a listing shows only
what the caller's context owns. At most :data:`~mock_services._recent.LIMIT` collections, each
of at most ``LIMIT`` objects, are kept (oldest dropped first).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mock_services._recent import RecentDict
from orchestrator.catalog import clean_text
from orchestrator.identity import Context, ResourceAttributes

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ANY_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Stored:
    data: dict[str, Any]
    owners: ResourceAttributes


@dataclass(frozen=True)
class Shape:
    """Where an operation acts: its collection's path template and, for an item operation, the
    path parameter that names the object."""

    collection: str
    item: str | None

    @classmethod
    def of(cls, route: str) -> Shape:
        head, _, last = route.rstrip("/").rpartition("/")
        match = _PARAM.match(last)
        if match is None:
            return cls(route.rstrip("/") or "/", None)
        return cls(head or "/", match.group(1))


def concrete(template: str, values: Mapping[str, object]) -> str:
    return _ANY_PARAM.sub(lambda m: str(values.get(m.group(1), "")), template)


def objects_named(route: str, values: Mapping[str, object],
                  binds: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(collection, key)`` of the object each path parameter in ``binds`` names: the
    parameter's value in the collection its path leads up to."""
    out: list[tuple[str, str]] = []
    prefix = ""
    for segment in route.strip("/").split("/"):
        match = _PARAM.match(segment)
        if match is not None and match.group(1) in binds:
            out.append((concrete(prefix, values) or "/", str(values.get(match.group(1), ""))))
        prefix += "/" + segment
    return out


def owners_of(ctx: Context | None, resource: str) -> ResourceAttributes:
    if ctx is None:  # the static baseline's service account: its objects belong to no one
        return ResourceAttributes(resource=resource)
    return ResourceAttributes(resource=resource, environment=ctx.environment,
                              repository=ctx.repository)


@dataclass
class DeclaredState:
    """What a declared service holds: ``collections[collection][key]``."""

    service: str
    clock: Callable[[], float]
    collections: RecentDict[str, RecentDict[str, Stored]] = field(default_factory=RecentDict)
    created: int = 0

    def get(self, collection: str, key: str) -> Stored | None:
        objects = self.collections.get(collection)
        return objects.get(key) if objects is not None else None

    def listing(self, collection: str) -> list[Stored]:
        objects = self.collections.get(collection)
        return list(objects.values()) if objects is not None else []

    def put(self, collection: str, key: str, data: dict[str, Any], ctx: Context | None) -> Stored:
        objects = self.collections.get(collection)
        if objects is None:
            objects = RecentDict()
            self.collections.put(collection, objects)
        stored = Stored(data, owners_of(ctx, self.resource(collection, key)))
        objects.put(key, stored)
        return stored

    def replace(self, collection: str, key: str, data: dict[str, Any]) -> Stored:
        """``data`` for an existing object, which keeps its owners."""
        old = self.collections[collection][key]
        stored = Stored(data, old.owners)
        self.collections[collection].put(key, stored)
        return stored

    def delete(self, collection: str, key: str) -> bool:
        objects = self.collections.get(collection)
        return objects is not None and objects.pop(key, None) is not None

    def next_key(self, collection: str) -> str:
        """An id for a new object: the collection's initial and the next count not already
        kept there (``C000001``); the count moves on only when it is taken (:meth:`take_key`),
        so a refused creation changes nothing."""
        last = collection.rstrip("/").rpartition("/")[2]
        initial = (last[:1] if last[:1].isalpha() else "O").upper()
        count = self.created + 1
        while self.get(collection, f"{initial}{count:06d}") is not None:
            count += 1
        return f"{initial}{count:06d}"

    def take_key(self, key: str) -> None:
        self.created = max(self.created, int(key[1:]))

    def resource(self, collection: str, key: str) -> str:
        return clean_text(f"{self.service}:{collection.rstrip('/')}/{key}")

    def resolve(self, route: str, fields: tuple[str, ...], binds: tuple[str, ...],
                values: tuple[object, ...]) -> list[ResourceAttributes]:
        """The owners of every stored object the request's path names (an object not held
        names nothing: the handler answers 404, or creates it)."""
        named = dict(zip(fields, values, strict=True))
        found = (self.get(c, k) for c, k in objects_named(route, named, binds))
        return [s.owners for s in found if s is not None]
