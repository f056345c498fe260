"""What ``infrabot simulate`` prints: one event's run, a summary table, or JSON; and how it
exits (0, or 1 with one line saying what was lost, unexpected or unfinished)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from infrabot.cli._common import CommandError, out_console
from infrabot.cli._simulate_events import Expected
from orchestrator._display import display_safe
from orchestrator._words import plural

if TYPE_CHECKING:  # orchestrator.ci imports the web stack: slow, so only where it is used
    from orchestrator.ci._load import EventOutcome, LoadReport


def command(*args: str, state_dir: Path | None) -> str:
    """``infrabot ARGS`` as the user would type it, with the state directory they gave."""
    words = ["infrabot", *args] + (["--state-dir", str(state_dir)] if state_dir else [])
    return " ".join(shlex.quote(w) for w in words)


def print_report(report: LoadReport, as_json: bool, state_dir: Path | None) -> None:
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
        rows.append(("see it", command("runs", "show", o.run_id, state_dir=state_dir)))
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


def done(report: LoadReport, expected: list[Expected]) -> None:
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
