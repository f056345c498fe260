"""Comparing a scenario's expectations with what happened: one :class:`Check` per expectation.

A check that fails carries the expected and actual values as text and, for a hop, a unified
diff of the expected attempts against the actual ones (each actual attempt shown with the fields
its expectation names, so only real differences differ).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from infrabot.scenarios._model import NOT_RUN, Expect, RootExpect, StepExpect
from infrabot.scenarios._outcome import FIELDS, Attempt, Outcome

_ALL = ("step", "exchange", "call", "error", "status", "reason")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    expected: str
    actual: str
    diff: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(expect: Expect, outcome: Outcome) -> list[Check]:
    """Every expectation of ``expect``, in the file's order, against ``outcome``."""
    return list(_checks(expect, outcome))


def _simple(name: str, expected: object, actual: object, passed: bool | None = None) -> Check:
    ok = expected == actual if passed is None else passed
    return Check(name, ok, _text(expected), _text(actual))


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(sorted(str(v) for v in value)) + "]"
    return str(value)


def _checks(expect: Expect, out: Outcome) -> Iterator[Check]:
    hook = expect.webhook
    reason = hook.reason or ("accepted" if expect.expects_run else None)  # a run must start
    if reason is None:
        yield _simple("webhook", hook.status, out.webhook_status)
    else:
        yield _simple("webhook", f"{hook.status} {reason}",
                      f"{out.webhook_status} {out.webhook_reason}")
    if not expect.expects_run:
        return
    run = out.run
    if expect.workflow is not None:
        yield _simple("workflow", expect.workflow, run.workflow if run else None)
    if expect.status is not None:
        yield _simple("status", expect.status, run.status if run else None)
    if expect.reason is not None:
        actual = run.reason if run else None
        yield _simple("reason", f"…{expect.reason}…", actual,
                      passed=actual is not None and expect.reason in actual)
    if expect.root is not None:
        yield from _root(expect.root, out)
    if expect.never_granted:
        leaks = [f"{scope} ({whose})" for whose, scopes in out.tokens for scope in scopes
                 if scope in expect.never_granted]
        yield Check("never_granted", not leaks, f"in no token: {_text(expect.never_granted)}",
                    "in none" if not leaks else "granted: " + ", ".join(leaks))
    for agent, hop in expect.hops.items():
        yield _hop(agent, hop, out.hops.get(agent, []))
    if expect.replay is not None:
        want = expect.replay
        got = out.replay
        yield _simple("replay", " ".join(v for v in (want.exchange, want.error, want.reason) if v),
                      " ".join(v for v in got if v) or None,
                      passed=got[0] == want.exchange
                      and want.error in (None, got[1]) and want.reason in (None, got[2]))


def _root(root: RootExpect, out: Outcome) -> Iterator[Check]:
    actual = out.root
    if root.outcome is not None:
        yield _simple("root.outcome", root.outcome, actual.outcome)
    if root.granted is not None:
        yield _simple("root.granted", set(root.granted), set(actual.granted))
    if root.granted_includes:
        missing = set(root.granted_includes) - set(actual.granted)
        yield _simple("root.granted_includes", root.granted_includes, actual.granted,
                      passed=not missing)
    if root.granted_excludes:
        present = set(root.granted_excludes) & set(actual.granted)
        yield _simple("root.granted_excludes", f"none of {_text(root.granted_excludes)}",
                      _text(actual.granted), passed=not present)
    if root.dropped is not None:
        yield _simple("root.dropped", set(root.dropped), set(actual.dropped))
    if root.error is not None:
        yield _simple("root.error", root.error, actual.error)
    if root.reason is not None:
        yield _simple("root.reason", root.reason, actual.reason)


def _hop(agent: str, hop: str | tuple[StepExpect, ...], attempts: list[Attempt]) -> Check:
    name = f"hops.{agent}"
    if isinstance(hop, str):  # not_run
        actual = [_line(a, _ALL) for a in attempts]
        return Check(name, not attempts, NOT_RUN, "\n".join(actual) or NOT_RUN,
                     () if not attempts else _diff([NOT_RUN], actual))
    expected = [_expected_line(step) for step in hop]
    # An attempt that matches shows the fields its expectation names; any other shows them all.
    actual = [_line(a, _fields(hop[i])) if i < len(hop) and _matches(hop[i], a)
              else _line(a, _ALL, skip_empty=True) for i, a in enumerate(attempts)]
    passed = len(hop) == len(attempts) and all(
        _matches(s, a) for s, a in zip(hop, attempts, strict=True))
    return Check(name, passed, "\n".join(expected), "\n".join(actual) or NOT_RUN,
                 () if passed else _diff(expected, actual or [NOT_RUN]))


def _fields(step: StepExpect) -> tuple[str, ...]:
    return tuple(f for f in FIELDS if getattr(step, f) is not None)


def _matches(step: StepExpect, attempt: Attempt) -> bool:
    for name in _fields(step):
        wanted, got = getattr(step, name), attempt.value(name)
        if name == "granted":
            if got is None or set(wanted) != set(got):
                return False
        elif wanted != got:
            return False
    return True


def _expected_line(step: StepExpect) -> str:
    return _format({f: getattr(step, f) for f in _fields(step)})


def _line(attempt: Attempt, fields: tuple[str, ...], *, skip_empty: bool = False) -> str:
    values = attempt.as_dict()
    return _format({f: values.get(f) for f in fields if f in values or not skip_empty})


def _format(values: dict[str, Any]) -> str:
    step = values.pop("step", "?")
    parts = [f"{k}={_text(v)}" for k, v in values.items()]
    return f"{step}: " + " ".join(parts) if parts else str(step)


def _diff(expected: list[str], actual: list[str]) -> tuple[str, ...]:
    lines = difflib.unified_diff(expected, actual, "expected", "actual", lineterm="", n=99)
    return tuple(lines)
