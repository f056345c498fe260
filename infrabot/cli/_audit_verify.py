"""``infrabot audit verify``: every writer's hash chain and every signed checkpoint, checked with
trusted public keys that never come from the database being checked."""

from __future__ import annotations

from pathlib import Path

import click

from infrabot.cli._audit_options import (
    DAMAGE,
    EXIT_TAMPERED,
    EXIT_UNANCHORED,
    Unreadable,
    damaged,
    db_option,
    opened,
)
from infrabot.cli._common import CommandError, load_settings
from orchestrator._display import display_safe
from orchestrator._words import plural
from orchestrator.audit import AnchorPolicy, check_trail, trusted_keys
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError
from orchestrator.identity import PublicKey


@click.command("verify", epilog="""\b
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
@db_option
def verify(db: Path | None, state_dir: Path | None, keys_file: Path | None) -> None:
    """Check every writer's hash chain and every signed checkpoint; say which records are
    anchored (vouched for by a checkpoint) and which come after the last one.

    A chain rewritten and re-hashed by someone who can write the database fails here unless
    they also hold the audit key.

    \b
    Example:
      infrabot audit verify --db .infrabot/audit.sqlite3 --keys audit-keys.json
    """
    settings = _settings(db, state_dir)
    target = db if db is not None else settings.audit_target
    keys_path = keys_file if keys_file is not None else settings.audit_keys_dir / PUBLIC_FILE
    with opened(target, Unreadable) as store:
        snapshot = store.snapshot()
        missing_guards = store.missing_guards()
    keys = _keys_for_verify(keys_path, given=keys_file is not None,
                            required=bool(snapshot.checkpoints))
    # a writer with no checkpoint left is held to the bounds writers are configured with here
    policy = AnchorPolicy(settings.audit_checkpoint_records, settings.audit_checkpoint_seconds)
    try:
        report = check_trail(snapshot, keys, policy)
    except DAMAGE as exc:  # whatever damaged rows still make the check raise: nothing checked
        raise Unreadable(damaged(target, exc)) from None
    for writer in report.writers:
        click.echo(display_safe(writer.describe()))
    problems = [*map(str, report.problems), *map(_missing_guard, missing_guards)]
    for problem in problems:
        click.echo(display_safe(problem))
    ctx = click.get_current_context()
    counts = (f"{plural(report.chain.records, 'record')} from "
              f"{plural(report.chain.writers, 'writer')}, "
              f"{plural(report.checkpoints, 'checkpoint')}")
    if problems:
        click.echo(f"audit trail damaged: {plural(len(problems), 'problem')} ({counts})",
                   err=True)
        ctx.exit(EXIT_TAMPERED)
    if report.unanchored:
        are = "is" if report.unanchored == 1 else "are"
        click.echo(f"audit trail intact, but {plural(report.unanchored, 'record')} {are} "
                   "unanchored (after their writer's last checkpoint, nothing signed vouches for "
                   f"them): {counts}")
        ctx.exit(EXIT_UNANCHORED)
    click.echo(f"audit trail intact and anchored: {counts}")


def _missing_guard(trigger: str) -> str:
    """A guard trigger gone: the stores create them with the tables and never drop one."""
    return (f"missing_guard: trigger {trigger}: missing or disabled, though every audit store "
            "creates it: the database was changed outside the audit store")


def _settings(db: Path | None, state_dir: Path | None) -> Settings:
    """The settings: where the database and the trusted keys are unless ``--db`` and ``--keys``
    say, and the checkpoint bounds; the state directory must exist only when the database is
    looked for there."""
    try:
        return load_settings(state_dir, state="stores" if db is None else "unused")
    except CommandError as exc:  # a bad setting: nothing could be checked (not exit 1)
        raise Unreadable(exc.message) from None


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
