"""Runs for people: one run hop by hop (``infrabot runs show``) and a list (``infrabot runs list``).

Each event becomes one line with a short summary of its detail: what was requested and granted at
an exchange, the method, service, action and answer of a call, the RFC error code and our reason
of a denial. Pure functions: they build rich renderables and print nothing. Every value is
plain text, never console markup, and display-safe (:func:`~orchestrator._display.display_safe`).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from orchestrator._display import display_safe
from orchestrator.runs._events import (
    DENIALS,
    BranchEnded,
    BranchTaken,
    CallDenied,
    Called,
    EventDetail,
    Exchanged,
    ExchangeDenied,
    Finished,
    HandedOff,
    Retrying,
    RootDenied,
    RootGranted,
    Started,
    StepSkipped,
    Timed,
)
from orchestrator.runs._model import Run, RunEvent

STATUS_STYLES = {"pending": "yellow", "running": "cyan", "succeeded": "green",
                 "denied": "red", "failed": "red", "expired": "magenta"}


def render_run(run: Run) -> RenderableType:
    """A header (run id, workflow, user, status, reason, origin) and the events, hop by hop."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("run", _text(run.run_id))
    header.add_row("workflow", _text(f"{run.workflow} ({run.mode})"))
    header.add_row("user", _text(run.user))
    header.add_row("status", _status(run.status))
    header.add_row("reason", _text(run.reason or "-"))
    header.add_row("event", _text(f"{run.trigger} → {run.environment}: {run.repository}@"
                                  f"{run.commit} ({run.service}"
                                  f"{f', PR #{run.pr}' if run.pr else ''})"))
    header.add_row("duration", _duration(run))
    if run.trace_id:
        header.add_row("trace", _text(run.trace_id))
    chains = run.branches
    for taken in (e for e in run.events if isinstance(e.detail, BranchTaken)):
        header.add_row("branch", _text(f"{taken.agent} {summarize(taken)}"))
        way = taken.detail
        for head in way.to if isinstance(way, BranchTaken) and way.join else ():
            header.add_row("", _text(f"∥ {' → '.join(chains.get(head, (head,)))}"))  # as it ran
    table = Table(title=f"events of {run.run_id}", title_justify="left", expand=False)
    table.add_column("+ms", justify="right", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for event in run.events:
        offset = int((event.time - run.created_at).total_seconds() * 1000)
        style = "red" if isinstance(event.detail, DENIALS) else ""
        table.add_row(str(offset), _text(event.agent or "orchestrator"),
                      Text(display_safe(event.kind), style=style), _text(summarize(event)))
    return Group(header, table)


RUNS_STACK_BELOW = 110  # narrower than this, ``render_runs`` gives one block per run


def render_runs(runs: Iterable[Run]) -> RenderableType:
    """One line per run (id, workflow, user, environment, status, reason, duration), or on a
    narrow console one block per run; ids, users and statuses are never cut or wrapped."""
    return _RunsView(list(runs))


class _RunsView:
    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= RUNS_STACK_BELOW:
            yield _runs_table(self.runs)
            return
        yield Text("runs", style="italic")
        for run in self.runs:
            yield Text.assemble(_text(run.run_id), "  ", _status(run.status), "  ",
                                _duration(run))
            yield Text.assemble("  ", _text(f"{run.workflow} for {run.user} in "
                                             f"{run.environment}"))
            yield Text.assemble("  reason: ", _text(run.reason or "-"))


def _runs_table(runs: list[Run]) -> Table:
    table = Table(title="runs", title_justify="left")
    whole = ("run id", "user", "status")
    for name in ("run id", "workflow", "user", "env", "status", "reason", "duration"):
        widest = max((len(display_safe(getattr(r, _FIELDS.get(name, "run_id")))) for r in runs),
                     default=0) if name in whole else None
        table.add_column(name, overflow="fold", no_wrap=name in whole, min_width=widest)
    for run in runs:
        table.add_row(*(_text(v) for v in (run.run_id, run.workflow, run.user,
                                           run.environment)),
                      _status(run.status), _text(run.reason or "-"), _duration(run))
    return table


_FIELDS = {"run id": "run_id", "user": "user", "status": "status"}


def summarize(event: RunEvent) -> str:
    """A one-line, human summary of an event's detail."""
    detail = event.detail
    summary = _summary(detail)
    return f"{summary} ({detail.ms} ms)" if isinstance(detail, Timed) else summary


def _text(value: object) -> Text:
    """A cell: plain text (never markup), display-safe."""
    return Text(display_safe(value))


def _status(status: str) -> Text:
    return Text(display_safe(status), style=STATUS_STYLES.get(status, ""))


def _duration(run: Run) -> str:
    ms = run.duration_ms
    if ms is None:
        return "-" if run.terminal else run.status
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _scopes(value: str | list[str] | None) -> str:
    if not value:
        return "(none)"
    return value if isinstance(value, str) else " ".join(value)


def _summary(d: EventDetail) -> str:
    match d:
        case Started():
            return (f"{d.event} by {d.user}: {d.service}@{d.commit} to {d.environment} via "
                    f"{d.trigger} ({d.mode})")
        case RootGranted():
            text = f"requested {_scopes(d.needed)} / granted {_scopes(d.granted)}"
            text += f"; dropped {_scopes(d.dropped)}" if d.dropped else ""
            return text + (f"; may_act {d.may_act}" if d.may_act else "")
        case RootDenied():
            return f"requested {_scopes(d.needed)} → {_denied(d.error, d.reason)}"
        case Exchanged():
            text = f"{d.for_}: requested {_scopes(d.requested)} / granted {_scopes(d.granted)}"
            cnf = (d.claims or {}).get("cnf")
            if isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str):
                text += f"; DPoP-bound to key {cnf['jkt']}"
            return text + ("; asked while the call before was in flight" if d.ahead else "")
        case ExchangeDenied():
            return f"{d.for_}: requested {_scopes(d.requested)} → {_denied(d.error, d.reason)}"
        case Called() | CallDenied():
            text = f"{d.method} {d.service} {d.action} → {d.status} "
            text += "allow" if d.status < 400 else f"deny ({d.reason})"
            return text + (" (replayed)" if d.replayed else "")
        case HandedOff():
            return f"to {d.to} with {_scopes(d.scope)}"
        case BranchTaken():
            way = " ∥ ".join(d.to) + (f", joined by {d.join}" if d.join else "")
            return (f"fan-out to {way}" if len(d.to) > 1 else f"to {way}") + \
                (f" (when {d.when})" if d.when else "")
        case StepSkipped():
            return f"{d.action} skipped: not ({d.when})"
        case BranchEnded():
            return f"branch {d.status}: {d.reason}; the join ends the run with it"
        case Retrying():
            return f"attempt {d.attempt} failed: {d.reason}; retry in {d.in_seconds} s"
        case Finished():
            return f"{d.status}: {d.reason}"
    return _generic(d)


def _denied(error: str, reason: str) -> str:
    return f"denied: {error} ({reason})"


def _generic(d: EventDetail) -> str:
    """A kind without a summary of its own: its fields."""
    fields = d.model_dump(mode="json")
    return ", ".join(f"{k}={v}" for k, v in fields.items() if k != "ms") or "-"
