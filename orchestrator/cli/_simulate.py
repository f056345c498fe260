"""``infrabot simulate``: CI events against a running system (``infrabot serve``).

One event, the events of a scenario file, or a bounded load run with a mix of users, services,
environments and bad events. Reads the webhook receiver's URL from DIR/endpoints.json and the
signing secret from INFRABOT_WEBHOOK_SECRET, else from DIR/webhook_secret (which ``serve``
writes when that is unset); run results come from the run log (INFRABOT_DATABASE_URL, else
DIR/runs.sqlite3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator._yamlfile import load_yaml
from orchestrator.cli._common import CommandError, endpoints, load_settings, state_dir_option
from orchestrator.cli._users import resolve_user
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError, TransientError

if TYPE_CHECKING:  # orchestrator.ci imports the web stack: slow, so only where it is used
    from orchestrator.ci._load import EventSpec, LoadReport

MAX_EVENTS = 100_000


@click.group("simulate")
def simulate() -> None:
    """Send CI events to a running system: one, a scenario file, or a load run.

    \b
    Example:
      infrabot simulate deploy --user sam --json
      infrabot simulate load --count 200 --rate 20
    """


def _send(settings: Settings, events: list[EventSpec], *, rate: float, timeout: float,
          as_json: bool) -> LoadReport:
    from orchestrator.ci._load import run_load
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
        try:
            report = run_load(urls["webhooks"], secret, settings.runs_target,
                              events, rate=rate, timeout=timeout,
                              on_sent=lambda n: progress.update(sent, completed=n),
                              on_done=lambda n: progress.update(done, completed=n))
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


def _print(report: LoadReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    data = report.as_dict()
    table = Table(title="simulation summary", show_header=False)
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
    Console().print(table)


def _counts(counter: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "—"


def _done(report: LoadReport) -> None:
    if report.lost:
        raise CommandError(f"{sum(report.lost.values())} event(s) lost: {_counts(report.lost)}"
                           + (f"; {report.unfinished} run(s) did not finish before the timeout"
                              if report.unfinished else ""))
    if report.unfinished:
        raise CommandError(f"{report.unfinished} run(s) did not finish before the timeout")


@simulate.command("deploy")
@click.option("--user", required=True,
              help="Who deploys: sam or user:sam (the directory must know the user).")
@click.option("--service", default="service-x", show_default=True)
@click.option("--env", "environment", default="prod", show_default=True)
@click.option("--commit", default="9f2c1e7", show_default=True)
@click.option("--trigger", type=click.Choice(["ci_pipeline", "manual"]), default="ci_pipeline",
              show_default=True)
@click.option("--pr", type=click.IntRange(1), default=124, show_default=True)
@click.option("--task", default="deploy", show_default=True,
              help="GitHub deployment task; rollback starts the rollback workflow.")
@click.option("--timeout", type=click.FloatRange(1, 600), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
def deploy(user: str, service: str, environment: str, commit: str, trigger: str, pr: int,
           task: str, timeout: float, as_json: bool, state_dir: Path | None) -> None:
    """Send one signed deployment event and wait for its run.

    \b
    Example:
      infrabot simulate deploy --user sam --service service-x --env prod
    """
    from orchestrator.ci._load import EventSpec

    settings = load_settings(state_dir)
    login = resolve_user(settings, user).removeprefix("user:")
    spec = EventSpec(login, service, environment, trigger, commit, pr, task=task)
    report = _send(settings, [spec], rate=0, timeout=timeout, as_json=as_json)
    _print(report, as_json)
    _done(report)


@simulate.command("scenario")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=5, show_default=True)
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@state_dir_option
def scenario(file: Path, rate: float, timeout: float, as_json: bool,
             state_dir: Path | None) -> None:
    """Send the events a YAML file lists (`event:` or `events:` with user, service, env, ...).

    \b
    Example:
      infrabot simulate scenario workflows/scenarios/happy-path.yaml
    """
    report = _send(load_settings(state_dir), _events_of(file), rate=rate, timeout=timeout,
                   as_json=as_json)
    _print(report, as_json)
    _done(report)


def _events_of(path: Path) -> list[EventSpec]:
    from orchestrator.ci._load import EventSpec

    data, _ = load_yaml(path)
    if not isinstance(data, dict) or not ("event" in data or "events" in data):
        raise CommandError(f"{path}: needs an `event:` mapping or an `events:` list")
    raw = data["events"] if "events" in data else [data["event"]]
    out: list[EventSpec] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict) or "user" not in item:
            raise CommandError(f"{path}: events[{index}] needs at least `user`")
        count, pr = item.get("count", 1), item.get("pr", 124)
        if not _whole(count, 0, MAX_EVENTS) or len(out) + count > MAX_EVENTS:
            raise CommandError(f"{path}: events[{index}].count must be a whole number; "
                               f"at most {MAX_EVENTS} events in all")
        if pr is not None and not _whole(pr, 1, 10**9):
            raise CommandError(f"{path}: events[{index}].pr must be a pull request number")
        for _ in range(count):
            out.append(EventSpec(
                str(item["user"]).removeprefix("user:"), str(item.get("service", "service-x")),
                str(item.get("environment", item.get("env", "prod"))),
                str(item.get("trigger", "ci_pipeline")), str(item.get("commit", "9f2c1e7")),
                item.get("pr", 124), task=str(item.get("task", "deploy"))))
    if not out:
        raise CommandError(f"{path}: no events")
    return out


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@simulate.command("load")
@click.option("--count", type=click.IntRange(1, MAX_EVENTS), default=100, show_default=True)
@click.option("--rate", type=click.FloatRange(0.1, 1000), default=20, show_default=True,
              help="Events per second.")
@click.option("--bad-ratio", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Share of deliberately bad events (unsigned, mis-signed, replayed, "
                   "malformed).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300, show_default=True)
@click.option("--json", "as_json", is_flag=True)
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

    report = _send(load_settings(state_dir), mixed_events(count, bad_ratio=bad_ratio, seed=seed),
                   rate=rate, timeout=timeout, as_json=as_json)
    _print(report, as_json)
    _done(report)
