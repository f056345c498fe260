"""``when:`` conditions: a tiny grammar of our own, parsed once, never ``eval``.

::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := operand (("<" | "<=" | ">" | ">=" | "==" | "!=") operand)?
    operand := NUMBER | 'text' | "text" | true | false | null | "(" expr ")"
             | path | FUNC "(" path ")"          FUNC: max, min, sum, len, avg
    path    := "steps" "." ID ("." (NAME | INDEX | "*"))*

``steps.latency.series.0.pointlist.*.1`` reads the ``latency`` step's result: ``.0`` takes an
item of a list, ``.*`` every item (a list). A path that leads nowhere is ``null``; a comparison
with ``null`` or between a number and a text is false, never an error at run time. What a
condition reads is known before anything runs (:attr:`Condition.step_ids`), so the loader checks
that every step it names runs earlier.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|"[^"]*")
                     |(?P<op><=|>=|==|!=|<|>|\(|\))|(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z0-9_-]+|\*))*))""",
                    re.VERBOSE)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne}
_LITERALS = {"true": True, "false": False, "null": None}
_KEYWORDS = {"and", "or", "not"}


def _numbers(value: Any) -> list[float]:
    items = value if isinstance(value, list) else [value]
    return [float(v) for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _avg(value: Any) -> float | None:
    numbers = _numbers(value)
    return sum(numbers) / len(numbers) if numbers else None


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "max": lambda v: max(_numbers(v), default=None),
    "min": lambda v: min(_numbers(v), default=None),
    "sum": lambda v: sum(_numbers(v)),
    "avg": _avg,
    "len": lambda v: len(v) if isinstance(v, (list, dict, str)) else None,
}
MAX_LENGTH = 500


class ConditionError(ValueError):
    """A condition that does not parse; the message says where."""


def lookup(root: Any, parts: list[str]) -> Any:
    """Follow ``parts`` into a JSON-like value (``*``: every item); None where it leads nowhere."""
    value = root
    for index, part in enumerate(parts):
        if part == "*":
            if not isinstance(value, list):
                return None
            return [lookup(item, parts[index + 1:]) for item in value]
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", part):
            position = int(part)
            value = value[position] if -len(value) <= position < len(value) else None
        else:
            return None
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return op == "==" and left is right or op == "!=" and left is not right
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if not numeric and type(left) is not type(right):
        return op == "!="
    try:
        return bool(_COMPARE[op](left, right))
    except TypeError:
        return False


Node = tuple[Any, ...]


@dataclass(frozen=True)
class Condition:
    """A parsed condition: evaluate it over the results of earlier steps."""

    text: str
    tree: Node
    step_ids: frozenset[str]

    def __call__(self, steps: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self.tree, steps))


def _evaluate(node: Node, steps: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "path":
        return lookup(steps.get(node[1]), node[2])
    if kind == "call":
        return _FUNCTIONS[node[1]](_evaluate(node[2], steps))
    if kind == "not":
        return not _evaluate(node[1], steps)
    if kind == "and":
        return all(_evaluate(child, steps) for child in node[1])
    if kind == "or":
        return any(_evaluate(child, steps) for child in node[1])
    return _compare(node[1], _evaluate(node[2], steps), _evaluate(node[3], steps))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text.rstrip()):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise ConditionError(f"unexpected {text[position:].strip()[:20]!r} at "
                                     f"column {position + 1}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            position = match.end()
        self.at = 0
        self.steps: set[str] = set()

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise ConditionError(f"{self.text!r} ends too soon")
        if value is not None and token[1] != value:
            raise ConditionError(f"expected {value!r} at column {token[2] + 1}, "
                                 f"found {token[1]!r}")
        self.at += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "path" and token[1] == word

    def expr(self) -> Node:
        children = [self.conjunction()]
        while self.is_word("or"):
            self.take()
            children.append(self.conjunction())
        return children[0] if len(children) == 1 else ("or", tuple(children))

    def conjunction(self) -> Node:
        children = [self.negation()]
        while self.is_word("and"):
            self.take()
            children.append(self.negation())
        return children[0] if len(children) == 1 else ("and", tuple(children))

    def negation(self) -> Node:
        if self.is_word("not"):
            self.take()
            return ("not", self.negation())
        left = self.operand()
        token = self.peek()
        if token is not None and token[1] in _COMPARE:
            self.take()
            return ("cmp", token[1], left, self.operand())
        return left

    def operand(self) -> Node:
        kind, value, column = self.take()
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "str":
            return ("lit", value[1:-1])
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "path" and value in _LITERALS:
            return ("lit", _LITERALS[value])
        if kind == "path" and value in _FUNCTIONS:
            self.take("(")
            argument = self.operand()
            self.take(")")
            return ("call", value, argument)
        if kind == "path" and value not in _KEYWORDS:
            return self.path(value, column)
        raise ConditionError(f"unexpected {value!r} at column {column + 1}")

    def path(self, value: str, column: int) -> Node:
        parts = value.split(".")
        if parts[0] != "steps" or len(parts) < 2 or not re.fullmatch(r"[a-z][a-z0-9_]*",
                                                                     parts[1]):
            raise ConditionError(f"{value!r} at column {column + 1}: a path starts with "
                                 "steps.<step id>")
        self.steps.add(parts[1])
        return ("path", parts[1], parts[2:])


def parse_condition(text: str) -> Condition:
    """Parse ``text``; :class:`ConditionError` names what is wrong and where."""
    if not text.strip() or len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition is 1 to {MAX_LENGTH} characters")
    parser = _Parser(text)
    tree = parser.expr()
    if parser.peek() is not None:
        _, value, column = parser.take()
        raise ConditionError(f"unexpected {value!r} at column {column + 1}")
    return Condition(text, tree, frozenset(parser.steps))
