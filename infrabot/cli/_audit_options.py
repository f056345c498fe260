"""What ``infrabot audit``'s commands share: the database and filter options, opening the store
read-only (a SQLite file or a PostgreSQL database: no schema applied, nothing written) with
one-line errors, and ``audit verify``'s exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from infrabot.cli._common import CommandError, load_settings, state_dir_option
from orchestrator._display import display_safe
from orchestrator.audit import AuditStore
from orchestrator.errors import InfraBotError, Unavailable

F = TypeVar("F", bound=Callable[..., Any])


# ``audit verify`` exit codes (also in its --help).
EXIT_INTACT = 0
EXIT_TAMPERED = 1
EXIT_USAGE = 2
EXIT_UNANCHORED = 3
EXIT_UNREADABLE = 4
# Everything reading a damaged file can raise beside the store's Unavailable (SQLite's errors): a
# column of the wrong type or a value that does not decode (ValueError, TypeError), a nesting
# too deep for the JSON decoder.
DAMAGE = (ValueError, TypeError, OverflowError, RecursionError)


class BadInput(click.ClickException):
    """A usage error shown as a single line (click's UsageError adds the usage text)."""

    exit_code = EXIT_USAGE


class Unreadable(CommandError):
    """``audit verify`` could not check anything: one line, its own exit code."""

    exit_code = EXIT_UNREADABLE

    def format_message(self) -> str:
        return display_safe(self.message)


def iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
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


def db_option(func: F) -> F:
    func = click.option(
        "--db",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Audit database file (SQLite); overrides INFRABOT_AUTH_DATABASE_URL, "
             "INFRABOT_DATABASE_URL and <state_dir>/audit.sqlite3.",
    )(func)
    return state_dir_option(func)


def filter_options(func: F) -> F:
    options = [
        click.option("--user", help="On behalf of this user: sam or user:sam (the directory "
                                    "must know it)."),
        click.option("--agent", help="Performed by this actor, e.g. agent:infrabot."),
        click.option("--run", "run_id", help="Records of this run id."),
        click.option("--service", help="datadog, github, aws, pagerduty or authserver."),
        click.option("--action", help="e.g. metrics:query or token_exchange."),
        click.option("--decision", type=click.Choice(["allow", "deny"])),
        click.option(
            "--since", metavar="ISO-TIME", callback=iso_time, help="From this time (inclusive)."
        ),
        click.option(
            "--until", metavar="ISO-TIME", callback=iso_time, help="Up to this time (exclusive)."
        ),
        click.option("--limit", type=click.IntRange(min=1), help="At most N records."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextmanager
def open_store(db: Path | None, state_dir: Path | None,
                error: type[CommandError] = CommandError) -> Iterator[AuditStore]:
    """The database, opened read-only; any failure to open or read it, inside the block too,
    is ``error`` with one line naming the database and the problem."""
    target = db if db is not None else load_settings(state_dir, state="stores").audit_target
    with opened(target, error) as store:
        yield store


@contextmanager
def opened(target: Path | str, error: type[CommandError]) -> Iterator[AuditStore]:
    """The store at ``target`` opened read-only: a SQLite file or a PostgreSQL database must
    already be an audit database, and is left as it was found (no schema applied)."""
    if isinstance(target, Path) and not target.is_file():
        raise error(f"no audit database at {target}")
    try:
        with AuditStore(target, read_only=True) as store:
            try:
                yield store
            except Unavailable as exc:  # a damaged file, a database that went away
                cause = first_line(exc.__cause__) if exc.__cause__ else exc.reason
                raise error(f"{store.target}: {exc.message}: {cause}") from None
    except InfraBotError as exc:
        raise error(exc.message.splitlines()[0]) from None
    except DAMAGE as exc:  # SQLite can even fail to word its error (UnicodeDecodeError)
        raise error(damaged(target, exc)) from None


def damaged(target: Path | str, exc: BaseException) -> str:
    """The one line for a database whose content makes reading or checking it raise."""
    where = target if isinstance(target, Path) else "audit database"  # a URL: no password
    return f"{where}: damaged audit database: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
