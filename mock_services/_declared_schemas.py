"""Requests and responses of a declared service checked against its document's schemas.

``jsonschema`` validates (OpenAPI 3.1 schemas are JSON Schema 2020-12; 3.0 schemas are read as
draft 4 with ``nullable: true`` turned into a ``"null"`` type). The whole document is one
``referencing`` resource, so a schema's ``$ref: '#/components/schemas/Message'`` resolves as the
document says. A failure names where the value failed and the keyword it broke, never the value
(a body may hold anything, a token included). A value nested so deeply against a recursive schema
(a tree whose ``Node`` has a ``child: Node``) that checking it recurses past Python's limit fails
as ``<what>: too deeply nested to check`` (a request's body refused as the caller's, an answer as
the mock's).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft4Validator, Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4, DRAFT202012

from orchestrator.services import json_path

_ROOT = "urn:infrabot:openapi-document"
# A value at most this deep whose check still recurses past the limit did not make it recurse:
# the schema did (a $ref to itself), the document's fault, not the value's.
_SHALLOW = 16


def _pointer(loc: tuple[str | int, ...]) -> str:
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema: ``"null"`` added to ``type``."""
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


class Schemas:
    """The validators of one document, by where the schema sits in it."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        version = str(raw.get("openapi", "3.1.0"))
        modern = version.startswith("3.1")
        document = copy.deepcopy(dict(raw)) if modern else _nullable(dict(raw))
        spec = DRAFT202012 if modern else DRAFT4
        self._document = document
        self._registry: Registry[Any] = Registry().with_resource(
            _ROOT, spec.create_resource(document))
        self._cls: type[Validator] = Draft202012Validator if modern else Draft4Validator
        self._cache: dict[tuple[str | int, ...], Validator] = {}

    def resolved(self, loc: tuple[str | int, ...]) -> Mapping[str, Any]:
        """The schema at ``loc``, with a top-level ``$ref`` into the document followed as the
        validator follows it (``referencing``: percent-encoding, ``~`` escapes, array indexes);
        the loader refused every ``$ref`` that names nothing, outside the document or round in a
        circle (``orchestrator/services/_checks.py``)."""
        node: Any = self._document
        for part in loc:
            node = node[part]
        resolver = self._registry.resolver()
        for _ in range(8):
            ref = node.get("$ref") if isinstance(node, dict) else None
            if not isinstance(ref, str) or not ref.startswith("#"):
                break
            node = resolver.lookup(f"{_ROOT}{ref}").contents
        return node if isinstance(node, Mapping) else {}

    def problem(self, loc: tuple[str | int, ...], value: Any, what: str) -> str | None:
        """Why ``value`` fails the schema at ``loc`` (``what`` names the value), or None."""
        validator = self._cache.get(loc)
        if validator is None:
            schema = {"$ref": f"{_ROOT}#/{_pointer(loc)}"}
            validator = self._cls(schema, registry=self._registry)
            self._cache[loc] = validator
        try:
            error = best_match(validator.iter_errors(value))
        except RecursionError:
            if _depth(value) <= _SHALLOW:
                raise
            return f"{what}: too deeply nested to check"
        if error is None:
            return None
        where = json_path(tuple(error.absolute_path)).replace("$", what, 1)
        return f"{where}: fails {error.validator}"


def _depth(value: Any) -> int:
    """How deeply ``value``'s arrays and objects nest (without recursing)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            todo.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, depth + 1) for v in node)
    return deepest
