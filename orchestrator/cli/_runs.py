"""``infrabot runs list|show``: what each run did, hop by hop."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from orchestrator.cli._common import CommandError, load_settings, state_dir_option
from orchestrator.cli._users import resolve_user
from orchestrator.errors import InfraBotError
from orchestrator.runs import STATUSES, Run, RunStore, render_run, render_runs


def _store(state_dir: Path | None) -> RunStore:
    target = load_settings(state_dir).runs_target
    if isinstance(target, Path) and not target.is_file():
        raise CommandError(f"no runs yet: {target} does not exist")
    try:
        return RunStore(target)
    except InfraBotError as exc:
        raise CommandError(exc.message) from None


def run_json(run: Run) -> dict[str, object]:
    return run.model_dump(mode="json")


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
        user = resolve_user(load_settings(state_dir), user)
    with _store(state_dir) as store:
        found = store.list(limit, status=status, user=user)
    if as_json:
        click.echo(json.dumps([run_json(r) for r in found], indent=2))
    else:
        Console(width=160).print(render_runs(found))


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its events as JSON.")
@state_dir_option
def show(run_id: str, as_json: bool, state_dir: Path | None) -> None:
    """One run hop by hop: agent, exchange result, calls, decision, timings.

    \b
    Example:
      infrabot runs show run-3f2a9c...
    """
    with _store(state_dir) as store:
        run = store.get(run_id)
    if run is None:
        raise CommandError(f"no run {run_id!r}")
    if as_json:
        click.echo(json.dumps(run_json(run), indent=2))
    else:
        Console(width=160).print(render_run(run))
