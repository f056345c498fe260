"""The resources a request acts on, and their owning attributes.

Each service registers, per target kind of the catalogue (:class:`~orchestrator.catalog.Target`),
a resolver: the raw values the request names (path and query parameters, fields of the one
parsed JSON body) in, the :class:`~orchestrator.identity.ResourceAttributes` of every resource
they name out. A resolver reads the raw JSON tolerantly (a body of the wrong shape is refused by
the handler's own validation, and acts on nothing); it skips an id that names no resource (the
handler answers that 404 or 400), so every resource the handler can act on is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from pydantic import TypeAdapter, ValidationError

from orchestrator.errors import InsufficientScope
from orchestrator.identity import ResourceAttributes, TargetMismatch

Resolver = Callable[[tuple[object, ...]], list[ResourceAttributes]]
MAX_NAMED = 100  # the most ids one request may name (the handlers' own list bounds)
_WHOLE = TypeAdapter(int)  # pydantic's lax int: what a handler's int parameter accepts


class TargetRefused(InsufficientScope):
    """403: the token's context does not own a resource the request names."""

    def __init__(self, resource: ResourceAttributes, mismatch: TargetMismatch) -> None:
        super().__init__(f"{resource.resource} is in {mismatch.attribute} {mismatch.actual!r}, "
                         f"the token's is {mismatch.claimed!r}", reason=mismatch.reason)
        self.resource = resource
        self.mismatch = mismatch

    def audit_context(self) -> dict[str, str]:
        """Both values, for the audit record: the claimed one is the token's own ``ctx``."""
        m = self.mismatch
        return {"target.resource": self.resource.resource, f"target.{m.attribute}": m.actual,
                f"claimed.{m.attribute}": m.claimed}


def names(value: object) -> list[str]:
    """The ids in a raw request value: a string or number, or a list of them (others ignored)."""
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items[:MAX_NAMED]
            if isinstance(v, str | int) and not isinstance(v, bool)]


def numbers(value: object, limit: int) -> list[int]:
    """The ids in a raw request value that are whole numbers from 0 to ``limit``, read the way
    the handler's own validation reads them (``+1101``, `` 1101``, ``1_101`` and 1101 padded with
    any number of zeros are 1101), whole: so no spelling the handler accepts escapes the check;
    others name nothing (the handler refuses them). Pydantic reads a number's digits in linear
    time and refuses more than 4,300 of them, as the handler does."""
    out = []
    for raw in names(value):
        try:
            number = _WHOLE.validate_python(raw)
        except ValidationError:
            continue
        if 0 <= number <= limit:
            out.append(number)
    return out


def records(value: object) -> Iterator[Mapping[str, object]]:
    """The JSON objects in a raw list value (others ignored)."""
    if isinstance(value, list):
        yield from (v for v in value[:MAX_NAMED] if isinstance(v, Mapping))


def tag_value(tags: Mapping[str, str], *keys: str) -> str | None:
    return next((tags[k] for k in keys if k in tags), None)
