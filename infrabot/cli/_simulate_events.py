"""The events a scenario file lists for ``infrabot simulate scenario``, and what each event
should come to (``expect:``), read with the scenario schema ``infrabot check`` uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from infrabot.cli._common import CommandError
from orchestrator._yamlfile import load_yaml

if TYPE_CHECKING:  # orchestrator.ci imports the web stack: slow, so only where it is used
    from orchestrator.ci._load import EventOutcome, EventSpec

MAX_EVENTS = 100_000

_EVENT_KEYS = frozenset({"user", "service", "environment", "env", "trigger", "commit", "pr",
                         "task", "count", "type", "expect"})
_FILE_KEYS = frozenset({"name", "description", "event", "events", "expect"})
_CHECK_ONLY = ("changes", "workflow")  # need a private copy of the workflows: `infrabot check`


@dataclass(frozen=True)
class Expected:
    """What an event should come to: the receiver's answer, then its run's end."""

    webhook: int | None = 202  # the receiver's HTTP status; None: any answer
    webhook_reason: str | None = None
    statuses: frozenset[str] = frozenset({"succeeded"})  # a run's acceptable terminal statuses
    reason: str | None = None  # a substring of the run's terminal reason
    workflow: str | None = None

    def surprise(self, o: EventOutcome) -> str | None:
        """What about ``o`` was not expected, in a few words; None when it went as expected
        (or is still unknown: lost, or unfinished)."""
        if o.lost or (o.run_id is not None and o.status is None):
            return None
        if o.run_id is None:
            if self.webhook is None or (o.http_status == self.webhook and self.webhook_reason
                                        in (None, o.answer)):
                return None
            said = f"{o.http_status} {o.answer}"
            return (f"event {o.index + 1} refused at the receiver: {said}" if self.webhook == 202
                    else f"event {o.index + 1} answered {said}, expected {self._answer()}")
        if self.webhook not in (None, 202):
            return f"event {o.index + 1} accepted (run {o.run_id}), expected {self._answer()}"
        ended = f"run {o.run_id} ended {o.status}: {o.reason}"
        if o.status not in self.statuses:
            wanted = " or ".join(sorted(self.statuses))
            return ended if self.statuses == {"succeeded"} else f"{ended} (expected {wanted})"
        if self.reason is not None and self.reason not in (o.reason or ""):
            return f"{ended} (expected a reason containing {self.reason!r})"
        if self.workflow is not None and o.workflow != self.workflow:
            return f"run {o.run_id} ran workflow {o.workflow} (expected {self.workflow})"
        return None

    def _answer(self) -> str:
        return f"{self.webhook} {self.webhook_reason or ''}".strip()


LOAD_MIX = Expected(webhook=None, statuses=frozenset({"succeeded", "denied"}))


def events_of(path: Path) -> tuple[list[EventSpec], list[Expected]]:
    from orchestrator.ci._load import EventSpec  # deferred: the load driver imports the web stack

    data, _ = load_yaml(path)
    if not isinstance(data, dict) or not ("event" in data or "events" in data):
        raise CommandError(f"{path}: needs an `event:` mapping or an `events:` list")
    for key in _CHECK_ONLY:
        if key in data:
            raise CommandError(f"{path}: `{key}:` needs a private copy of the workflows, which "
                               f"a running system does not have: run it with `infrabot check "
                               f"{path}`")
    _known_keys(path, "the file", data, _FILE_KEYS)
    default = _expected(path, "expect", data.get("expect"))
    raw = data["events"] if "events" in data else [data["event"]]
    out: list[EventSpec] = []
    expected: list[Expected] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict) or "user" not in item:
            raise CommandError(f"{path}: events[{index}] needs at least `user`")
        _known_keys(path, f"events[{index}]", item, _EVENT_KEYS)
        if item.get("type", "deployment") != "deployment":
            raise CommandError(f"{path}: events[{index}].type: simulate sends deployment "
                               f"events; for {item['type']!r} run `infrabot check {path}`")
        count, pr = item.get("count", 1), item.get("pr", 124)
        if not _whole(count, 0, MAX_EVENTS) or len(out) + count > MAX_EVENTS:
            raise CommandError(f"{path}: events[{index}].count must be a whole number; "
                               f"at most {MAX_EVENTS} events in all")
        if pr is not None and not _whole(pr, 1, 10**9):
            raise CommandError(f"{path}: events[{index}].pr must be a pull request number")
        mine = (_expected(path, f"events[{index}].expect", item["expect"]) if "expect" in item
                else default)
        for _ in range(count):
            out.append(EventSpec(
                str(item["user"]).removeprefix("user:"), str(item.get("service", "service-x")),
                str(item.get("environment", item.get("env", "prod"))),
                str(item.get("trigger", "ci_pipeline")), str(item.get("commit", "9f2c1e7")),
                item.get("pr", 124), task=str(item.get("task", "deploy"))))
            expected.append(mine)
    if not out:
        raise CommandError(f"{path}: no events")
    return out, expected


def _known_keys(path: Path, where: str, data: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise CommandError(f"{path}: {where} has unknown key `{unknown[0]}` (known: "
                           f"{', '.join(sorted(known))}); for more run `infrabot check {path}`")


def _expected(path: Path, where: str, raw: object) -> Expected:
    """An ``expect:`` mapping read with the scenario schema ``infrabot check`` uses."""
    from infrabot.scenarios._model import Expect  # deferred: scenarios import the whole system

    if raw is None:
        return Expected()
    try:
        expect = Expect.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise CommandError(f"{path}: {where}{'.' + field if field else ''}: "
                           f"{first['msg'].removeprefix('Value error, ')}") from None
    unchecked = [name for name in ("root", "never_granted", "hops") if getattr(expect, name)]
    if unchecked:
        click.echo(f"note: {path}: {where}.{', '.join(unchecked)} not checked here; "
                   f"`infrabot check {path}` checks them", err=True)
    if not expect.expects_run:
        return Expected(webhook=expect.webhook.status, webhook_reason=expect.webhook.reason)
    assert expect.status is not None  # the schema requires it when a run is expected
    return Expected(statuses=frozenset({expect.status}), reason=expect.reason,
                    workflow=expect.workflow)


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
