"""``infrabot audit query|verify|export|keys``: read, check and export the audit trail.

The database is ``INFRABOT_AUTH_DATABASE_URL``'s, else ``INFRABOT_DATABASE_URL``'s, else
``<state_dir>/audit.sqlite3`` from the settings (``INFRABOT_STATE_DIR`` or ``--state-dir``, which
must then exist); ``--db`` names a SQLite file instead. A SQLite file is opened read-only. Bad
input, a missing, damaged or foreign file, an unreachable database, an output file that cannot
be written is one ``Error: ...`` line on stderr and a non-zero exit, never a traceback. Every
value printed is display-safe (:mod:`orchestrator._display`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

import click

from infrabot.cli._audit_options import (
    db_option,
    filter_options,
    open_store,
)
from infrabot.cli._audit_verify import verify
from infrabot.cli._common import (
    CommandError,
    check_writable,
    load_settings,
    out_console,
    output_file,
    state_dir_option,
)
from infrabot.cli._users import resolve_user
from orchestrator._display import safe_json
from orchestrator.audit import (
    AuditKeys,
    StoredRecord,
    public_document,
    to_jsonl,
    to_ocsf,
)
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.audit._table import AuditView
from orchestrator.errors import InfraBotError


@click.group("audit")
def audit() -> None:
    """Query, verify and export the tamper-evident audit trail.

    \b
    Example:
      infrabot audit query --user user:sam --decision deny
    """


audit.add_command(verify)


@audit.command("query")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@db_option
def query(db: Path | None, state_dir: Path | None, as_json: bool, **filters: Any) -> None:
    """Show audit records, ordered by time.

    \b
    Example:
      infrabot audit query --user user:sam --decision deny --since 2025-07-18T16:00:00Z
    """
    if filters.get("user"):  # sam or user:sam, and only a user the directory knows
        filters["user"] = resolve_user(load_settings(state_dir, state="unused"), filters["user"])
    with open_store(db, state_dir) as store:
        records = store.query(**filters)
    if as_json:
        click.echo(safe_json([record.to_json() for record in records], indent=2))
        return
    out_console().print(AuditView(records))
    if not records:
        click.echo("no matching audit records", err=True)



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
@filter_options
@db_option
def export(db: Path | None, state_dir: Path | None, fmt: str, output: str, **filters: Any) -> None:
    """Export records as JSON lines (default) or OCSF events, to stdout or --output.

    Exit status: 0 exported, 1 the database cannot be read or --output written, 2 bad usage.

    \b
    Example:
      infrabot audit export --format ocsf --run run-42 --output audit.ocsf.jsonl
    """
    with open_store(db, state_dir) as store:
        records = store.query(**filters)
    with output_file(output, "the export") as fp:
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

    Exit status: 0 written, 1 no audit key yet or --output cannot be written, 2 bad usage.

    \b
    Example:
      infrabot audit keys -o audit-keys.json
      infrabot audit keys --rotate
    """
    settings = load_settings(state_dir, state="create" if rotate else "unused")
    if output != "-":  # said before a rotation, not after it
        check_writable(Path(output), "the public keys")
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
    with output_file(output, "the public keys") as fp:
        fp.write(json.dumps(document, indent=2) + "\n")
