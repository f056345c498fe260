"""Bounds for every number a route takes, so an extreme one is a 400, never a 5xx.

A number outside its bound is refused by the handler's validation as 400
``number_out_of_range`` (see :func:`mock_services._bodies.validation_response`); one too
large for any bound is refused when the body is parsed.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from pydantic import Field

MAX_EPOCH = 2**32  # epoch seconds: early 2106
MAX_ID = 2**31 - 1  # the ids of monitors, pulls, issues and deployments
MAX_MAGNITUDE = 1e15  # a metric threshold

EpochSeconds = Annotated[int, Field(ge=0, le=MAX_EPOCH)]
Finite = Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]


class Bounds(TypedDict):
    """Inclusive bounds, as FastAPI's ``Query``/``Path`` take them (``**EPOCH_BOUNDS``)."""

    ge: int
    le: int


EPOCH_BOUNDS: Bounds = {"ge": 0, "le": MAX_EPOCH}
ID_BOUNDS: Bounds = {"ge": 1, "le": MAX_ID}
