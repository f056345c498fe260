"""``infrabot simulate``: CI events against a running system (``infrabot serve``).

One event, the events of a scenario file, or a bounded load run with a mix of users, services,
environments and bad events. Reads the webhook receiver's URL from DIR/endpoints.json and the
signing secret from INFRABOT_WEBHOOK_SECRET, else from DIR/webhook_secret (which ``serve``
writes when that is unset); run results come from the run log (INFRABOT_DATABASE_URL, else
DIR/runs.sqlite3).

Every event is judged against what was expected of it: by default an accepted event whose run
succeeds; a scenario file's ``expect:`` says otherwise; a load run's mix expects refusals of its
bad events and denials by policy. Anything else is exit status 1 with one line saying what.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator._display import display_safe
from orchestrator._words import plural
from orchestrator._yamlfile import load_yaml
from orchestrator.cli._common import (
    CommandError,
    endpoints,
    load_settings,
    out_console,
    state_dir_option,
)
from orchestrator.cli._users import resolve_user
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError, TransientError

if TYPE_CHECKING:  # orchestrator.ci imports the web stack: slow, so only where it is used
    from orchestrator.ci._load import EventOutcome, EventSpec, LoadReport

MAX_EVENTS = 100_000
PICKUP_HINT_SECONDS = 5.0  # no run picked up by an agent this long after the first: say so
_EXIT = """\b
Exit codes:
  0  every event went as expected: {zero}
  1  {one}
     or an event was lost, a run did not finish before --timeout, or the
     system could not be used (one Error: line)
  2  bad usage (an unknown option, a value out of range, a missing file)"""
EXIT_CODES = _EXIT.format(
    zero="accepted, and its run succeeded\n     (in a scenario file: as its expect: says)",
    one="an event was refused at the receiver, or a run ended denied, failed\n"
        "     or expired, and that was not expected;")
LOAD_EXIT_CODES = _EXIT.format(
    zero="none lost, every run finished,\n     none failed or expired",
    one="a run failed or expired (the mix expects its bad events to be refused\n"
        "     and some runs to be denied);")
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


@click.group("simulate", epilog=EXIT_CODES)
def simulate() -> None:
    """Send CI events to a running system: one, a scenario file, or a load run.

    \b
    Example:
      infrabot simulate deploy --user sam --json
      infrabot simulate load --count 200 --rate 20
    """


def _send(settings: Settings, events: list[EventSpec], *, rate: float, timeout: float,
          as_json: bool, state_dir: Path | None) -> LoadReport:
    from orchestrator.ci._load import Waiting, run_load
    from orchestrator.ci._secret import sender_secret

    urls = _endpoints(settings)
    if "webhooks" not in urls:
        raise CommandError(f"{settings.endpoints_file} names no webhook receiver")
    secret = sender_secret(settings)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    err = Console(stderr=True)  # bars for a terminal; not in a log or a script's capture
    with Progress(*columns, console=err, disable=as_json or not err.is_terminal) as progress:
        sent = progress.add_task("sent", total=len(events))
        done = progress.add_task("runs finished", total=len(events))
        waiting = Waiting(PICKUP_HINT_SECONDS, lambda ids: progress.console.print(
            _no_worker(settings, ids, state_dir), markup=False, highlight=False,
            soft_wrap=True))
        try:
            report = run_load(urls["webhooks"], secret, settings.runs_target,
                              events, rate=rate, timeout=timeout,
                              on_sent=lambda n: progress.update(sent, completed=n),
                              on_done=lambda n: progress.update(done, completed=n),
                              waiting=waiting)
        except TransientError as exc:  # the receiver never answered the first event
            raise CommandError(f"cannot reach the webhook receiver at {urls['webhooks']}: "
                               f"{exc.message} (is `infrabot serve` running?)") from None
        except InfraBotError as exc:  # the run log cannot be opened
            raise CommandError(exc.message) from None
    return report


def _endpoints(settings: Settings) -> dict[str, str]:
    """``endpoints.json``; with a shared database and no state directory of the servers', the
    configured receiver (``INFRABOT_HOST``, ``INFRABOT_WEBHOOKS_PORT``)."""
    if settings.database_url is not None and not settings.endpoints_file.exists():
        return {"webhooks": f"http://{settings.host}:{settings.webhooks_port}"}
    return endpoints(settings)


def _no_worker(settings: Settings, run_ids: list[str], state_dir: Path | None) -> str:
    """The hint when no agent has picked up any run: in distributed mode nothing consumes the
    broker's queues until an `infrabot worker` runs (the broker's URL is not shown: it may
    hold a password)."""
    which = (f"run {run_ids[0]}" if len(run_ids) == 1
             else f"any of {plural(len(run_ids), 'waiting run')}")
    return (f"no worker has picked up {which} after {PICKUP_HINT_SECONDS:g} s (no agent hop has "
            f"started; the broker is {settings.broker_kind}): start one with "
            f"`{_command('worker', state_dir=state_dir)}`; still waiting")


def _command(*args: str, state_dir: Path | None) -> str:
    """``infrabot ARGS`` as the user would type it, with the state directory they gave."""
    words = ["infrabot", *args] + (["--state-dir", str(state_dir)] if state_dir else [])
    return " ".join(shlex.quote(w) for w in words)


def _print(report: LoadReport, as_json: bool, state_dir: Path | None) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif len(report.outcomes) == 1:
        _print_one(report, report.outcomes[0], state_dir)
    else:
        _print_summary(report)


def _print_one(report: LoadReport, o: EventOutcome, state_dir: Path | None) -> None:
    """One event: its run id, final status and reason, and the command that shows it."""
    rows: list[tuple[str, str]] = []
    if o.lost:
        rows.append(("lost", f"{o.answer} (no run started)"))
    elif o.run_id is None:
        rows.append(("refused at the receiver", f"{o.http_status} {o.answer} (no run started)"))
    else:
        rows.append(("run", o.run_id + (f" (workflow {o.workflow})" if o.workflow else "")))
        rows.append(("status", o.status or "unfinished: still running at the timeout"))
        rows.append(("reason", o.reason or "-"))
        if o.status is not None:
            latency = report.percentile(50)
            rows.append(("took", f"{latency:.0f} ms, "
                                 f"{plural(report.exchanges, 'token exchange')}"
                         if latency is not None else "-"))
        rows.append(("see it", _command("runs", "show", o.run_id, state_dir=state_dir)))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {display_safe(value)}")


def _print_summary(report: LoadReport) -> None:
    data = report.as_dict()
    table = Table(title="simulation summary", show_header=False)
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")
    table.add_row("events sent", str(report.sent))
    table.add_row("accepted (runs)", str(report.accepted))
    table.add_row("refused at the receiver", _counts(report.refused))
    table.add_row("runs by terminal status", _counts(report.statuses))
    table.add_row("unfinished at timeout", str(report.unfinished))
    table.add_row("lost (never accepted)", _counts(report.lost))
    table.add_row("sends retried", str(report.retries))
    table.add_row("latency p50 / p95 / p99", " / ".join(
        "—" if v is None else f"{v:.0f} ms" for v in data["latency_ms"].values()))
    table.add_row("exchanges per second", f"{data['exchanges_per_second']}")
    table.add_row("denials by reason", _counts(report.denials))
    table.add_row("wall time", f"{report.seconds:.1f} s")
    out_console().print(table)


def _counts(counter: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "—"


def _done(report: LoadReport, expected: list[Expected]) -> None:
    """Exit 0, or 1 with one line: what was lost, what went otherwise than expected, and
    what did not finish."""
    problems = []
    if report.lost:
        problems.append(f"{plural(sum(report.lost.values()), 'event')} lost: "
                        f"{_counts(report.lost)}")
    surprises = [s for o, e in zip(report.outcomes, expected, strict=False)
                 if (s := e.surprise(o)) is not None]
    if surprises:
        more = len(surprises) - 1
        problems.append(surprises[0] + (f" (and {more} more not as expected)" if more else ""))
    if report.unfinished:
        problems.append(f"{plural(report.unfinished, 'run')} did not finish before the timeout")
    if problems:
        raise CommandError(display_safe("; ".join(problems)))


@simulate.command("deploy", epilog=EXIT_CODES)
@click.option("--user", required=True,
              help="Who deploys: sam or user:sam (the directory must know the user).")
@click.option("--service", default="service-x", show_default=True,
              help="The service deployed.")
@click.option("--env", "environment", default="prod", show_default=True,
              help="The environment deployed to.")
@click.option("--commit", default="9f2c1e7", show_default=True, help="The commit deployed.")
@click.option("--trigger", type=click.Choice(["ci_pipeline", "manual"]), default="ci_pipeline",
              show_default=True, help="What started the deployment.")
@click.option("--pr", type=click.IntRange(1), default=124, show_default=True,
              help="The pull request the commit came from.")
@click.option("--task", default="deploy", show_default=True,
              help="GitHub deployment task; rollback starts the rollback workflow.")
@click.option("--timeout", type=click.FloatRange(1, 600), default=30, show_default=True,
              help="Seconds to wait for the run to end.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (the summary, and the event under `events`).")
@state_dir_option
def deploy(user: str, service: str, environment: str, commit: str, trigger: str, pr: int,
           task: str, timeout: float, as_json: bool, state_dir: Path | None) -> None:
    """Send one signed deployment event and wait for its run: prints the run id, its final
    status and reason, and the command that shows it hop by hop.

    \b
    Example:
      infrabot simulate deploy --user sam --service service-x --env prod
    """
    from orchestrator.ci._load import EventSpec

    settings = load_settings(state_dir, state="stores")
    login = resolve_user(settings, user).removeprefix("user:")
    spec = EventSpec(login, service, environment, trigger, commit, pr, task=task)
    report = _send(settings, [spec], rate=0, timeout=timeout, as_json=as_json,
                   state_dir=state_dir)
    _print(report, as_json, state_dir)
    _done(report, [Expected()])


@simulate.command("scenario", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=5, show_default=True,
              help="Events per second.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60, show_default=True,
              help="Seconds to wait, from the first event, for every run to end.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@state_dir_option
def scenario(file: Path, rate: float, timeout: float, as_json: bool,
             state_dir: Path | None) -> None:
    """Send the events a YAML file lists (`event:` or `events:` with user, service, env,
    trigger, commit, pr, task, count) and judge each by the file's `expect:`.

    `expect:` (for the whole file, or per event) takes `webhook: {status, reason}`, `status`
    (the run's terminal status), `reason` (a substring of the run's reason) and `workflow`;
    without it every event must be accepted and its run succeed. `expect.root`, `hops` and
    `never_granted` are checked only by `infrabot check`, and a file with `changes:` or
    `workflow:` (a private copy of the workflows) is refused: run it with `infrabot check`.

    \b
    Example:
      infrabot simulate scenario workflows/scenarios/happy-path.yaml
    """
    events, expected = _events_of(file)
    settings = load_settings(state_dir, state="stores")
    report = _send(settings, events, rate=rate, timeout=timeout, as_json=as_json,
                   state_dir=state_dir)
    _print(report, as_json, state_dir)
    _done(report, expected)


def _events_of(path: Path) -> tuple[list[EventSpec], list[Expected]]:
    from orchestrator.ci._load import EventSpec

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
    from orchestrator.scenarios._model import Expect

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


@simulate.command("load", epilog=LOAD_EXIT_CODES)
@click.option("--count", type=click.IntRange(1, MAX_EVENTS), default=100, show_default=True,
              help="How many events to send.")
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=20, show_default=True,
              help="Events per second.")
@click.option("--bad-ratio", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Share of deliberately bad events (unsigned, mis-signed, replayed, "
                   "malformed).")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed of the random mix: the same seed sends the same events.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300, show_default=True,
              help="Seconds, from the first event, to send and wait for every run to end.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as JSON (every event's outcome under `events`).")
@state_dir_option
def load(count: int, rate: float, bad_ratio: float, seed: int, timeout: float, as_json: bool,
         state_dir: Path | None) -> None:
    """A load run: COUNT events at RATE per second with a mix of users, services,
    environments and bad events; then a summary.

    \b
    Example:
      infrabot simulate load --count 200 --rate 20
    """
    from orchestrator.ci._load import mixed_events

    settings = load_settings(state_dir, state="stores")
    report = _send(settings, mixed_events(count, bad_ratio=bad_ratio, seed=seed), rate=rate,
                   timeout=timeout, as_json=as_json, state_dir=state_dir)
    _print(report, as_json, state_dir)
    _done(report, [LOAD_MIX] * len(report.outcomes))
