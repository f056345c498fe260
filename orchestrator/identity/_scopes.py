"""URN scopes (``urn:infra:<area>:<verb>``): parse, format, narrow.

Delegation only ever narrows: every function here returns a subset of its inputs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from orchestrator.errors import InvalidScope

_SCOPE = re.compile(r"^urn:infra:[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}$")
MAX_SCOPES = 64

# Verbs that only read. Every other verb changes something and counts as a write for context rules.
READ_VERBS = frozenset({"read", "query", "list", "describe", "get", "view"})


def is_scope(value: str) -> bool:
    return bool(_SCOPE.fullmatch(value))


def parse_scopes(value: str) -> frozenset[str]:
    """Parse an RFC 6749 space-delimited scope string; any malformed entry is ``invalid_scope``."""
    if not isinstance(value, str):
        raise InvalidScope("scope must be a string", reason="malformed_scope")
    return _parse(value)


# Every token's scope string is parsed several times per request (claims validation, the
# exchange rules, the route check, the audit record); the few distinct strings a deployment sees
# are parsed once. Only well-formed strings are remembered (a refusal raises, so is not cached),
# and at most _CACHED of them.
_CACHED = 256


@functools.lru_cache(maxsize=_CACHED)
def _parse(value: str) -> frozenset[str]:
    items = value.split(" ")
    if len(items) > MAX_SCOPES:
        raise InvalidScope(f"at most {MAX_SCOPES} scopes", reason="malformed_scope")
    bad = [item for item in items if not is_scope(item)]
    if bad:
        shown = bad[0][:80]
        raise InvalidScope(
            f"malformed scope {shown!r}: expected urn:infra:<area>:<verb>", reason="malformed_scope"
        )
    return frozenset(items)


def format_scopes(scopes: Iterable[str]) -> str:
    """The canonical space-delimited form: sorted, no duplicates."""
    return " ".join(sorted(set(scopes)))


def narrow(first: Iterable[str], *others: Iterable[str]) -> frozenset[str]:
    """The intersection of every scope set given."""
    result = frozenset(first)
    for other in others:
        result &= frozenset(other)
    return result


def filter_scopes(user_permissions: Iterable[str], required_scopes: Iterable[str]) -> list[str]:
    """The reference article's ``filterScopes``: the required scopes the user actually holds,
    in the order they were required."""
    held = frozenset(user_permissions)
    return [scope for scope in dict.fromkeys(required_scopes) if scope in held]


def verb(scope: str) -> str:
    return scope.rsplit(":", 1)[-1]


def area(scope: str) -> str:
    return scope.split(":")[2]


def is_write(scope: str) -> bool:
    return verb(scope) not in READ_VERBS
