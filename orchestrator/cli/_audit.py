"""``infrabot audit query|verify|export|keys``: read, check and export the audit trail.

The database is ``INFRABOT_DATABASE_URL``'s, else ``<state_dir>/audit.sqlite3`` from the settings
(``INFRABOT_STATE_DIR`` or ``--state-dir``); ``--db`` names a SQLite file instead. A SQLite file
is opened read-only. Bad input, a missing, damaged or foreign file, an unreachable database is
one ``Error: ...`` line on stderr and a non-zero exit, never a traceback. Every value printed
is display-safe (:mod:`orchestrator._display`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from orchestrator._display import display_safe, safe_json
from orchestrator._words import plural
from orchestrator.audit import (
    AuditKeys,
    AuditStore,
    StoredRecord,
    check_trail,
    public_document,
    to_jsonl,
    to_ocsf,
    trusted_keys,
)
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.audit._table import AuditView
from orchestrator.cli._common import CommandError, load_settings, out_console, state_dir_option
from orchestrator.cli._users import resolve_user
from orchestrator.errors import InfraBotError, Unavailable
from orchestrator.identity import PublicKey

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
_DAMAGE = (ValueError, TypeError, OverflowError, RecursionError)


class BadInput(click.ClickException):
    """A usage error shown as a single line (click's UsageError adds the usage text)."""

    exit_code = EXIT_USAGE


class Unreadable(CommandError):
    """``audit verify`` could not check anything: one line, its own exit code."""

    exit_code = EXIT_UNREADABLE

    def format_message(self) -> str:
        return display_safe(self.message)


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
        help="Audit database file (SQLite); overrides INFRABOT_DATABASE_URL and "
             "<state_dir>/audit.sqlite3.",
    )(func)
    return state_dir_option(func)


def _filter_options(func: F) -> F:
    options = [
        click.option("--user", help="On behalf of this user: sam or user:sam (the directory "
                                    "must know it)."),
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
def _open_store(db: Path | None, state_dir: Path | None,
                error: type[CommandError] = CommandError) -> Iterator[AuditStore]:
    """The database (a SQLite file opened read-only); any failure to open or read it, inside
    the block too, is ``error`` with one line naming the database and the problem."""
    target = db if db is not None else load_settings(state_dir, state="stores").audit_target
    with _opened(target, error) as store:
        yield store


@contextmanager
def _opened(target: Path | str, error: type[CommandError]) -> Iterator[AuditStore]:
    if isinstance(target, Path) and not target.is_file():
        raise error(f"no audit database at {target}")
    try:
        with AuditStore(target, read_only=isinstance(target, Path)) as store:
            try:
                yield store
            except Unavailable as exc:  # a damaged file, a database that went away
                cause = _first_line(exc.__cause__) if exc.__cause__ else exc.reason
                raise error(f"{store.target}: {exc.message}: {cause}") from None
    except InfraBotError as exc:
        raise error(exc.message.splitlines()[0]) from None
    except _DAMAGE as exc:  # SQLite can even fail to word its error (UnicodeDecodeError)
        where = target if isinstance(target, Path) else "audit database"  # a URL: no password
        raise error(f"{where}: damaged audit database: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


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
    if filters.get("user"):  # sam or user:sam, and only a user the directory knows
        filters["user"] = resolve_user(load_settings(state_dir, state="unused"), filters["user"])
    with _open_store(db, state_dir) as store:
        records = store.query(**filters)
    if as_json:
        click.echo(safe_json([record.to_json() for record in records], indent=2))
        return
    out_console().print(AuditView(records))
    if not records:
        click.echo("no matching audit records", err=True)


@audit.command("verify", epilog="""\b
Exit codes:
  0  intact, and every record is anchored by a signed checkpoint
  1  tampering found (each problem is printed)
  2  bad usage
  3  intact, but some records come after their writer's last checkpoint (unanchored)
  4  nothing could be checked: no or damaged database, no or unreadable trusted keys""")
@click.option("--keys", "keys_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="Trusted audit public keys (JWKS), e.g. saved earlier by `infrabot audit "
                   f"keys`; default <state_dir>/keys/audit/{PUBLIC_FILE}. Never taken from "
                   "the database being checked.")
@_db_option
def verify(db: Path | None, state_dir: Path | None, keys_file: Path | None) -> None:
    """Check every writer's hash chain and every signed checkpoint; say which records are
    anchored (vouched for by a checkpoint) and which come after the last one.

    A chain rewritten and re-hashed by someone who can write the database fails here unless
    they also hold the audit key.

    \b
    Example:
      infrabot audit verify --db .infrabot/audit.sqlite3 --keys audit-keys.json
    """
    target, keys_path = _verify_paths(db, state_dir, keys_file)
    with _opened(target, Unreadable) as store:
        snapshot = store.snapshot()
    keys = _keys_for_verify(keys_path, given=keys_file is not None,
                            required=bool(snapshot.checkpoints))
    report = check_trail(snapshot, keys)
    for writer in report.writers:
        click.echo(display_safe(writer.describe()))
    for problem in report.problems:
        click.echo(display_safe(str(problem)))
    ctx = click.get_current_context()
    counts = (f"{plural(report.chain.records, 'record')} from "
              f"{plural(report.chain.writers, 'writer')}, "
              f"{plural(report.checkpoints, 'checkpoint')}")
    if not report.ok:
        click.echo(f"audit trail damaged: {plural(len(report.problems), 'problem')} ({counts})",
                   err=True)
        ctx.exit(EXIT_TAMPERED)
    if report.unanchored:
        are = "is" if report.unanchored == 1 else "are"
        click.echo(f"audit trail intact, but {plural(report.unanchored, 'record')} {are} "
                   "unanchored (after their writer's last checkpoint, nothing signed vouches for "
                   f"them): {counts}")
        ctx.exit(EXIT_UNANCHORED)
    click.echo(f"audit trail intact and anchored: {counts}")


def _verify_paths(db: Path | None, state_dir: Path | None, keys_file: Path | None
                  ) -> tuple[Path | str, Path]:
    """The database and the trusted keys file; the settings (and the state directory) are read
    only when ``--db`` or ``--keys`` leaves one of them to it."""
    if db is not None and keys_file is not None:
        return db, keys_file
    try:
        settings = load_settings(state_dir, state="stores" if db is None else "unused")
    except CommandError as exc:  # a bad setting: nothing could be checked (not exit 1)
        raise Unreadable(exc.message) from None
    return (db if db is not None else settings.audit_target,
            keys_file if keys_file is not None else settings.audit_keys_dir / PUBLIC_FILE)


def _keys_for_verify(path: Path, *, given: bool, required: bool) -> dict[str, PublicKey]:
    """The trusted keys: ``--keys`` or the state directory's published audit keys. Missing keys
    are an error only when there are checkpoints to check."""
    if not given and not path.exists() and not required:
        return {}
    if not path.exists():
        raise Unreadable(f"no trusted audit keys at {path}: pass --keys FILE "
                         "(saved from `infrabot audit keys` where the writers run)")
    try:
        return trusted_keys(path)
    except InfraBotError as exc:
        raise Unreadable(exc.message) from None


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
        fp.write(safe_json(to_ocsf(record), separators=(",", ":")) + "\n")


@audit.command("keys")
@click.option("--rotate", is_flag=True,
              help="Make a new audit key current first; the old public key stays published "
                   "(marked retired_at), the old private key is overwritten.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write the public keys here instead of stdout.")
@state_dir_option
def keys(state_dir: Path | None, rotate: bool, output: str) -> None:
    """Print (export) the audit public keys that verify checkpoints: a JWKS, never private.

    Keep a copy where the database's writers cannot change it, and give it to `audit verify
    --keys` later. The same keys are served at the authorization server's /audit/keys.

    \b
    Example:
      infrabot audit keys -o audit-keys.json
      infrabot audit keys --rotate
    """
    settings = load_settings(state_dir, state="create" if rotate else "unused")
    directory = settings.audit_keys_dir
    if rotate:
        existed = (directory / PUBLIC_FILE).exists()
        ring = AuditKeys.open(directory, settings.signing_alg, now=int(time.time()))
        if existed:
            ring.rotate(now=int(time.time()))
        click.echo(f"audit key rotated: {ring.current().kid}", err=True)
    try:
        document = public_document(directory / PUBLIC_FILE)
    except InfraBotError as exc:
        raise CommandError(f"{exc.message} (a writer makes the key when it first starts)") \
            from None
    with click.open_file(output, "w", encoding="utf-8") as fp:
        fp.write(json.dumps(document, indent=2) + "\n")
