"""Scripted faults on top of :class:`~reliability._faultproxy.FaultProxy`.

A :class:`Script` applies a pattern, one character per request, to the requests whose path is
one of its ``paths``:

* ``.`` forward untouched;  ``5`` answer 503 and ``2`` answer 502 (the service never sees it);
* ``T`` forward (the service acts), then hold the answer past the agents' read timeout (5 s):
  a timeout after the side effect;
* ``X`` close the connection without an answer (the service never sees it).

:meth:`ScriptedProxy.burst` cycles its pattern over every matching request; :meth:`outage`
applies it only inside a time window (``seconds`` from now). Each request's fate is drawn under
the proxy's lock, so concurrent workers share one sequence.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from reliability._faultproxy import FaultProxy, Rule

STALL_SECONDS = 6.5  # past the agents' 5 s read timeout (agents._runtime)


@dataclass
class Script:
    paths: frozenset[str]
    pattern: str
    start: float = float("-inf")
    end: float = float("inf")
    applied: list[str] = field(default_factory=list)
    _position: itertools.count[int] = field(default_factory=itertools.count)

    def fate(self, path: str) -> str:
        if path not in self.paths or not self.start <= time.monotonic() < self.end:
            return "."
        char = self.pattern[next(self._position) % len(self.pattern)]
        self.applied.append(char)
        return char


class ScriptedProxy(FaultProxy):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[Script] = []
        self._made: list[Rule] = []
        self._script_lock = threading.Lock()

    def burst(self, paths: Iterable[str], pattern: str) -> Script:
        return self._script(Script(frozenset(paths), pattern))

    def outage(self, paths: Iterable[str], seconds: float, pattern: str = "5") -> Script:
        now = time.monotonic()
        return self._script(Script(frozenset(paths), pattern, start=now, end=now + seconds))

    def _script(self, script: Script) -> Script:
        with self._script_lock:
            self.scripts.append(script)
        return script

    def rule_for(self, path: str, body: bytes = b"") -> Rule | None:
        rule = super().rule_for(path, body)
        if rule is not None:
            return rule
        with self._script_lock:
            for script in self.scripts:
                char = script.fate(path)
                if char != ".":
                    made = _rule(char, path)
                    self._made.append(made)
                    return made
        return None

    def settle(self, timeout: float = 10.0) -> None:
        """Release every held answer and wait until the proxy has recorded each of them."""
        with self._script_lock:
            stalls = [r for r in self._made if r.kind == "stall"]
        for rule in stalls:
            rule.release()
        deadline = time.monotonic() + timeout
        while sum(1 for s in list(self.seen) if s.stalled) < \
                sum(1 for r in stalls if r.stalled.is_set()):
            assert time.monotonic() < deadline, "held answers not recorded"
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        with self._script_lock:
            for rule in self._made:
                rule.release()
        super().__exit__(*exc)  # type: ignore[arg-type]


def _rule(char: str, path: str) -> Rule:
    if char == "T":
        return Rule("stall", path, 1, hits=1, hold_seconds=STALL_SECONDS)
    if char == "X":
        return Rule("drop", path, 1, hits=1)
    return Rule("fail", path, 1, hits=1, status={"5": 503, "2": 502}[char])
