"""Checks over a declared document as a whole, before the mock ever serves it: every value is
JSON data (an OpenAPI document is JSON, whatever YAML reads), and every ``$ref`` names
something in the document.

Each returns the first problem as ``(where, what)``, ``where`` the key path of the offending
value, or None. Both walk the document without recursion: a document may nest as deeply as its
parser allowed.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from orchestrator.services._document import JsonPath, json_path

Problem = tuple[JsonPath, str]

# -- JSON data ------------------------------------------------------------------------------

_KINDS: tuple[tuple[type, str, str | None], ...] = (
    # (YAML's Python type, what the user wrote, how it is shown: None for str(value))
    (bool, "a YAML boolean (YAML reads on, off, yes and no so)", None),
    (int, "a YAML integer", None),
    (float, "a YAML number", None),
    (datetime.datetime, "a YAML timestamp", None),
    (datetime.date, "a YAML date", None),
    (bytes, "a YAML binary", "!!binary"),
    (set, "a YAML set", "!!set"),
    (tuple, "a YAML ordered map", "!!omap"),
    (type(None), "a YAML null", "null"),
)


def _said(value: Any) -> str:
    """``2024-01-01 is a YAML date``: what the reader made of an unquoted value."""
    for kind, what, shown in _KINDS:
        if isinstance(value, kind):
            text = shown or (json.dumps(value) if isinstance(value, bool) else str(value))
            return f"{text} is {what}"
    return f"{type(value).__name__} is not a YAML value"


def non_json(data: Any) -> Problem | None:
    """The first value (or mapping key) JSON cannot represent: a key that is not a string, a
    date, a timestamp, binary, a set, a number that is not finite."""
    stack: list[tuple[JsonPath, Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    return loc, f"the key {_said(key)}, not a string: quote it"
            stack.extend(((*loc, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, float) and not math.isfinite(value):
            return loc, f"{value} is a number JSON cannot hold, not JSON: quote it"
        elif value is not None and not isinstance(value, (str, int, float)):
            return loc, f"{_said(value)}, not JSON: quote it"
    return None


# -- $ref -----------------------------------------------------------------------------------

# The value of these is data, never a reference (a `$ref` in an example is just a field).
_DATA = frozenset({"example", "default", "const", "enum"})
# The keys of these mappings are names, not keywords (a field called `example` or `$ref`).
_NAMES = frozenset({"properties", "patternProperties", "$defs", "definitions",
                    "dependentSchemas", "schemas", "responses", "parameters", "requestBodies",
                    "headers", "links", "callbacks", "pathItems", "securitySchemes", "content",
                    "encoding", "paths", "webhooks", "variables"})
_NORMAL, _NAMED, _EXAMPLES, _EXAMPLE = range(4)  # an Example Object's `value` is data


def _children(node: Mapping[str, Any], mode: int) -> Iterator[tuple[str, Any, int]]:
    for key, value in node.items():
        if mode == _NAMED:
            yield key, value, _NORMAL
        elif mode == _EXAMPLES:
            yield key, value, _EXAMPLE
        elif key == "$ref" or key in _DATA or key.startswith("x-") or (
                mode == _EXAMPLE and key == "value"):
            continue
        elif key == "examples":  # OpenAPI's map of Example Objects; JSON Schema's is data
            if isinstance(value, dict):
                yield key, value, _EXAMPLES
        else:
            yield key, value, _NAMED if key in _NAMES and isinstance(value, dict) else _NORMAL


def _target(document: Mapping[str, Any], ref: str) -> tuple[Any, str | None]:
    """What the reference ``ref`` names in ``document``, or why it names nothing: a JSON
    pointer in a URI fragment, read as ``jsonschema``'s ``referencing`` reads it."""
    if not ref.startswith("#"):
        return None, (f"$ref {ref!r} is outside this document: only references into it "
                      "('#/...') are followed, nothing is fetched; copy what it names into "
                      "components")
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        return None, (f"$ref {ref!r} is not a JSON pointer: a reference into the document is "
                      "'#/...'")
    node: Any = document
    at: JsonPath = ()
    for token in pointer.split("/")[1:]:
        part = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node, at = node[part], (*at, part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node, at = node[int(part)], (*at, int(part))
        else:
            return None, f"$ref {ref!r} names nothing: {json_path(at)} has no {part!r}"
    if not isinstance(node, (dict, bool)):
        return None, f"$ref {ref!r} names {json_path(at)}, which is not an object"
    return node, None


def _resolve(document: Mapping[str, Any], ref: str) -> str | None:
    """Why ``ref`` does not name something in ``document``, or None. A chain of references
    round in a circle would have the validator follow it forever: refused too."""
    seen = [ref]
    node, problem = _target(document, ref)
    while problem is None and isinstance(node, dict) and isinstance(node.get("$ref"), str):
        if node["$ref"] in seen:
            return f"$ref {ref!r} goes round in a circle: {' -> '.join([*seen, node['$ref']])}"
        seen.append(node["$ref"])
        node, problem = _target(document, node["$ref"])
    return problem if problem is None or len(seen) == 1 else f"$ref {ref!r} leads to {problem}"


def broken_ref(document: Mapping[str, Any]) -> Problem | None:
    """The first ``$ref`` that is not a string naming something in ``document``."""
    stack: list[tuple[JsonPath, Any, int]] = [((), document, _NORMAL)]
    while stack:
        loc, node, mode = stack.pop()
        if isinstance(node, list):
            stack.extend(((*loc, i), v, _NORMAL) for i, v in reversed(list(enumerate(node))))
            continue
        if not isinstance(node, dict):
            continue
        if mode in (_NORMAL, _EXAMPLE) and "$ref" in node:
            ref = node["$ref"]
            problem = (_resolve(document, ref) if isinstance(ref, str)
                       else "a $ref is a string: '#/components/schemas/<name>'")
            if problem is not None:
                return (*loc, "$ref"), problem
        stack.extend(((*loc, k), v, m) for k, v, m in reversed(list(_children(node, mode))))
    return None
