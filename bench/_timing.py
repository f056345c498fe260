"""Timing one operation over many iterations, and the figures derived from the samples."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """Per-operation times of one measured operation, one per round (microseconds)."""

    rounds_us: tuple[float, ...]
    iterations: int

    @property
    def median_us(self) -> float:
        return statistics.median(self.rounds_us)

    @property
    def spread(self) -> float:
        """Max/min of the rounds: how steady the measurement was."""
        return max(self.rounds_us) / min(self.rounds_us) if min(self.rounds_us) > 0 else 0.0


def compare(ops: dict[str, Callable[[int], object]], iterations: int, rounds: int, *,
            warmup: int = 0) -> dict[str, Sample]:
    """Time every operation in ``ops``, round by round in turn (interleaved, so that a slow
    patch of a busy machine falls on all of them alike); ``op(i)`` is called for ``i`` in
    ``0..iterations*rounds``, after ``warmup`` calls numbered from ``iterations*rounds``.

    Each op takes the call's index so it can use inputs built before timing (each client
    assertion may be presented only once). A round's figure is its time over its iterations.
    """
    total = iterations * rounds
    for op in ops.values():
        for i in range(warmup):
            op(total + i)
    gc.collect()
    results: dict[str, list[float]] = {name: [] for name in ops}
    for r in range(rounds):
        base = r * iterations
        for name, op in ops.items():
            start = time.perf_counter_ns()
            for i in range(base, base + iterations):
                op(i)
            results[name].append((time.perf_counter_ns() - start) / iterations / 1000)
    return {name: Sample(tuple(values), iterations) for name, values in results.items()}


def per_op(op: Callable[[int], object], iterations: int, rounds: int, *,
           warmup: int = 0) -> Sample:
    """:func:`compare` for one operation."""
    return compare({"op": op}, iterations, rounds, warmup=warmup)["op"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (inclusive method); the only value if there is one."""
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0
