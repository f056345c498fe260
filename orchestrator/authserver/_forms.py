"""Reading OAuth form parameters: each at most once (RFC 6749 section 3.2), bounded in size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.errors import InvalidRequest

Form = Mapping[str, Sequence[str]]
MAX_PARAM_BYTES = 16384


def single(form: Form, name: str, *, required: bool = False) -> str | None:
    values = form.get(name, ())
    if len(values) > 1:
        raise InvalidRequest(f"parameter {name!r} is repeated", reason="repeated_parameter")
    if not values or values[0] == "":
        if required:
            raise InvalidRequest(f"parameter {name!r} is required", reason="missing_parameter")
        return None
    value = values[0]
    if len(value) > MAX_PARAM_BYTES:
        raise InvalidRequest(f"parameter {name!r} is too large", reason="parameter_too_large")
    return value


def required(form: Form, name: str) -> str:
    value = single(form, name, required=True)
    assert value is not None
    return value
