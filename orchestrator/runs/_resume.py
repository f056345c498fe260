"""The journal's pure rule (docs/journal.md): a hop's records, and where a redelivered or retried
hop picks up from them (:func:`resume_point`). No I/O; :mod:`orchestrator.runs._journal` keeps
the records in the run log.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

StepState = Literal["started", "done", "denied", "expired", "failed"]
Stop = Literal["denied", "expired", "failed"]
STOPS: frozenset[str] = frozenset(get_args(Stop))


@dataclass(frozen=True)
class StepRecord:
    """One journaled step of a hop (``step`` >= 0) or the hand-off to it (``DELIVERY_STEP``)."""

    step: int
    action: str
    state: str
    idempotency_key: str
    reason: str | None
    attempts: int

    @property
    def in_doubt(self) -> bool:
        """Recorded as started, never finished: whether the call acted is unknown."""
        return self.state == "started"


@dataclass(frozen=True)
class Resume:
    """Where a hop picks up. ``step``: the first step without a recorded outcome (the number of
    steps once all have one). ``in_doubt``: that step's ``started`` record, to repeat under
    its key. ``stopped``: a recorded stop before it, which is the hop's outcome. ``changed``:
    a record of another action than the plan has at its step (the workflow changed while the
    run went on): the hop can neither skip nor repeat by number, and ends there."""

    step: int
    in_doubt: StepRecord | None = None
    stopped: StepRecord | None = None
    changed: StepRecord | None = None


def idempotency_key(run_id: str, agent: str, step: int) -> str:
    """The step's key, the same on every attempt: ``<run>.<agent name>.<step>``."""
    return f"{run_id}.{agent.removeprefix('agent:')}.{step}"


def resume_point(records: Mapping[int, StepRecord], steps: int, *,
                 actions: Sequence[str] | None = None,
                 hand_offs: Collection[str] = ()) -> Resume:
    """The pure rule of docs/journal.md: skip what is ``done``; the first step without an
    outcome is next (in doubt if ``started``); a recorded stop is the hop's outcome. ``steps``
    counts the hop's steps, the hand-off exchange included when there is one.

    ``actions``: the plan's actions, step by step, and ``hand_offs``: the actions its hand-off
    exchanges may record (the steps after them). Given, every record is first compared with
    them; the first that matches neither is ``changed``."""
    if actions is not None:
        for index, recorded in sorted(records.items()):
            planned = actions[index] if index < len(actions) else None
            if recorded.action != planned and (planned is not None or
                                               recorded.action not in hand_offs):
                return Resume(index, changed=recorded)
    for index in range(steps):
        record = records.get(index)
        if record is None:
            return Resume(index)
        if record.state in STOPS:
            return Resume(index, stopped=record)
        if record.in_doubt:
            return Resume(index, in_doubt=record)
    return Resume(steps)
