"""``infrabot runs list|show``: what each run did, hop by hop."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import click
from pydantic import ValidationError

from infrabot._delegation_view import chain_lines, run_chains
from infrabot.cli._common import (
    CommandError,
    load_settings,
    out_console,
    state_dir_option,
)
from infrabot.cli._users import resolve_user
from orchestrator._display import display_safe
from orchestrator.errors import ConfigError, InfraBotError
from orchestrator.runs import (
    STATUSES,
    Run,
    RunStore,
    SpanLog,
    render_run,
    render_runs,
    render_waterfall,
)

# Everything reading a damaged run log can raise: the store's own errors (a file that is not a
# run log, or cannot be read), SQLite's, and a value that does not decode or validate
# (ValueError: JSON, times, pydantic), a wrong type, a nesting too deep for the JSON decoder.
_DAMAGE = (InfraBotError, sqlite3.Error, ValueError, TypeError, OverflowError, RecursionError)


@contextmanager
def _store(state_dir: Path | None) -> Iterator[RunStore]:
    """The run log (INFRABOT_DATABASE_URL, else DIR/runs.sqlite3), opened read-only on every
    back end: nothing created, migrated or written (no DDL on a database either), so a reader
    needs no write access. Any failure to open or read it, inside the block too, is one line
    naming it and the problem (a URL's password never)."""
    target = load_settings(state_dir, state="run_log").runs_target
    if isinstance(target, Path) and not target.is_file():
        raise CommandError(f"no runs yet: {target} does not exist")
    where = target if isinstance(target, Path) else "run log database"
    try:
        store = RunStore(target, read_only=True)
    except ConfigError as exc:
        if exc.__cause__ is not None:  # what SQLite said of a damaged file
            raise _damaged(where, exc) from None
        # no run log's tables there, a newer one, an unreachable database: it names them
        raise CommandError(exc.message) from None
    except _DAMAGE as exc:
        raise _damaged(where, exc) from None
    try:
        with store:
            yield store
    except _DAMAGE as exc:
        raise _damaged(where, exc) from None


def _damaged(where: Path | str, exc: BaseException) -> CommandError:
    return CommandError(f"{where}: damaged run log: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    """The innermost cause's first line: what SQLite, the decoder or the model said."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def run_json(run: Run) -> dict[str, object]:
    """The run as JSON, with its trace id (docs/tracing.md) beside its fields."""
    return {**run.model_dump(mode="json"), "trace_id": run.trace_id}


@click.group("runs")
def runs() -> None:
    """List runs and show one hop by hop.

    \b
    Example:
      infrabot runs list --user user:sam --json
      infrabot runs show run-3f2a9c...
    """


@runs.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--status", type=click.Choice(sorted(STATUSES)), default=None)
@click.option("--user", default=None,
              help="Only runs on behalf of this user: sam or user:sam.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@state_dir_option
def list_runs(limit: int, status: str | None, user: str | None, as_json: bool,
              state_dir: Path | None) -> None:
    """The newest runs first.

    \b
    Example:
      infrabot runs list --status denied
    """
    if user is not None:
        user = resolve_user(load_settings(state_dir, state="run_log"), user)
    with _store(state_dir) as store:
        found = store.list(limit, status=status, user=user)
    if as_json:
        click.echo(json.dumps([run_json(r) for r in found], indent=2))
    else:
        out_console().print(render_runs(found))


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its events as JSON.")
@click.option("--trace", "with_trace", is_flag=True,
              help="Also the run's trace as a waterfall: hop, exchange, call, and durations.")
@state_dir_option
def show(run_id: str, as_json: bool, with_trace: bool, state_dir: Path | None) -> None:
    """One run hop by hop: agent, exchange result, calls, decision, timings.

    \b
    Example:
      infrabot runs show run-3f2a9c...
      infrabot runs show run-3f2a9c... --trace
    """
    with _store(state_dir) as store:
        run = store.get(run_id)
        spans = SpanLog(store).of_trace(run.trace_id) if run and run.trace_id else []
    if run is None:
        raise CommandError(f"no run {run_id!r}")
    settings = load_settings(state_dir, state="run_log")
    if as_json:
        body = {**run_json(run), "delegation_chains": run_chains(settings, run)}
        click.echo(json.dumps({**body, "spans": [asdict(s) for s in spans]} if with_trace
                              else body, indent=2))
        return
    console = out_console()
    console.print(render_run(run))
    for chain in run_chains(settings, run):
        console.print(display_safe(f"delegation_chain ({chain['agent']}, {chain['for']}):"),
                      markup=False)
        for line in chain_lines(chain["records"]):
            console.print(f"  {display_safe(line)}", markup=False)
    if with_trace:
        console.print(render_waterfall(spans))
