"""``infrabot audit query|verify|export``: read, check and export the audit trail.

The database is ``INFRABOT_DATABASE_URL``'s, else ``<state_dir>/audit.sqlite3`` from the settings
(``INFRABOT_STATE_DIR`` or ``--state-dir``); ``--db`` names a SQLite file instead. Bad input is one ``Error: ...`` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from rich.console import Console

from orchestrator.audit import AuditStore, StoredRecord, render_table, to_jsonl, to_ocsf
from orchestrator.cli._common import CommandError, load_settings, state_dir_option
from orchestrator.errors import InfraBotError

F = TypeVar("F", bound=Callable[..., Any])
_PIPE_WIDTH = 240


class BadInput(click.ClickException):
    """A usage error shown as a single line (click's UsageError adds the usage text)."""

    exit_code = 2


def _iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time; ``Z`` or an offset, or none for UTC. A bare date means its midnight."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(
            f"{param.opts[0]}: not an ISO 8601 time: {value[:40]!r} (e.g. 2025-07-18T16:10:03Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _db_option(func: F) -> F:
    func = click.option(
        "--db",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Audit database file; overrides <state_dir>/audit.sqlite3.",
    )(func)
    return state_dir_option(func)


def _filter_options(func: F) -> F:
    options = [
        click.option("--user", help="On behalf of this principal, e.g. user:sam."),
        click.option("--agent", help="Performed by this actor, e.g. agent:infrabot."),
        click.option("--run", "run_id", help="Records of this run id."),
        click.option("--service", help="datadog, github, aws, pagerduty or authserver."),
        click.option("--action", help="e.g. metrics:query or token_exchange."),
        click.option("--decision", type=click.Choice(["allow", "deny"])),
        click.option(
            "--since", metavar="ISO-TIME", callback=_iso_time, help="From this time (inclusive)."
        ),
        click.option(
            "--until", metavar="ISO-TIME", callback=_iso_time, help="Up to this time (exclusive)."
        ),
        click.option("--limit", type=click.IntRange(min=1), help="At most N records."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextmanager
def _open_store(db: Path | None, state_dir: Path | None) -> Iterator[AuditStore]:
    target = db if db is not None else load_settings(state_dir).audit_target
    if isinstance(target, Path) and not target.is_file():
        raise CommandError(f"no audit database at {target}")
    try:
        with AuditStore(target) as store:
            yield store
    except InfraBotError as exc:
        raise CommandError(exc.message) from None
    except ValueError as exc:  # a record that no longer parses
        raise CommandError(str(exc).splitlines()[0]) from None


@click.group("audit")
def audit() -> None:
    """Query, verify and export the tamper-evident audit trail.

    \b
    Example:
      infrabot audit query --user user:sam --decision deny
    """


@audit.command("query")
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@_db_option
def query(db: Path | None, state_dir: Path | None, as_json: bool, **filters: Any) -> None:
    """Show audit records, ordered by time.

    \b
    Example:
      infrabot audit query --user user:sam --decision deny --since 2025-07-18T16:00:00Z
    """
    with _open_store(db, state_dir) as store:
        records = store.query(**filters)
    if as_json:
        click.echo(json.dumps([record.to_json() for record in records], indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    console.print(render_table(records))
    if not records:
        click.echo("no matching audit records", err=True)


@audit.command("verify")
@_db_option
def verify(db: Path | None, state_dir: Path | None) -> None:
    """Check every writer's hash chain; exit 1 naming each edit, deletion, insertion or reorder.

    \b
    Example:
      infrabot audit verify --db .infrabot/audit.sqlite3
    """
    with _open_store(db, state_dir) as store:
        report = store.verify()
    if report.ok:
        click.echo(f"audit trail intact: {report.records} records from {report.writers} writers")
        return
    for problem in report.problems:
        click.echo(str(problem))
    click.echo(f"audit trail damaged: {len(report.problems)} problems", err=True)
    click.get_current_context().exit(1)


@audit.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "ocsf"]),
    default="jsonl",
    show_default=True,
    help="jsonl: our records; ocsf: OCSF 1.1 API Activity events, one per line.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@_filter_options
@_db_option
def export(db: Path | None, state_dir: Path | None, fmt: str, output: str, **filters: Any) -> None:
    """Export records as JSON lines (default) or OCSF events, to stdout or --output.

    \b
    Example:
      infrabot audit export --format ocsf --run run-42 --output audit.ocsf.jsonl
    """
    with _open_store(db, state_dir) as store:
        records = store.query(**filters)
    with click.open_file(output, "w", encoding="utf-8") as fp:
        if fmt == "jsonl":
            to_jsonl(records, fp)
        else:
            _write_ocsf(records, fp)


def _write_ocsf(records: list[StoredRecord], fp: IO[str]) -> None:
    for record in records:
        fp.write(json.dumps(to_ocsf(record), ensure_ascii=False, separators=(",", ":")) + "\n")
