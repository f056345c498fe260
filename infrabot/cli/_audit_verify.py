"""``infrabot audit verify``: every writer's hash chain and every signed checkpoint, checked with
trusted public keys that never come from the database being checked, and held to the anchor
(the writer's newest checkpoint, kept outside the database) where there is one."""

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
from orchestrator.audit._anchorfile import ANCHOR_FILE, read_anchor
from orchestrator.audit._keys import PRIVATE_FILE, PUBLIC_FILE
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError
from orchestrator.identity import PublicKey


@click.command("verify", epilog="""\b
Exit codes:
  0  intact, and every record is anchored by a signed checkpoint
  1  tampering found (each problem is printed)
  2  bad usage
  3  intact, but some records come after their writer's last checkpoint (unanchored); or,
     with no checkpoint in the database and no anchor, unverified (a fresh tail and a
     rewritten trail look the same)
  4  nothing could be checked: no or damaged database, no or unreadable trusted keys or
     anchor""")
@click.option("--keys", "keys_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="Trusted audit public keys (JWKS), e.g. saved earlier by `infrabot audit "
                   f"keys`; default <state_dir>/keys/audit/{PUBLIC_FILE}. Never taken from "
                   "the database being checked.")
@click.option("--anchor", "anchor_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="The writers' newest signed checkpoint, kept outside the database: a copy of "
                   f"<state_dir>/keys/audit/{ANCHOR_FILE} from where they run (checked with "
                   "the trusted keys). Default: that file, when the database is the state "
                   "directory's own.")
@db_option
def verify(db: Path | None, state_dir: Path | None, keys_file: Path | None,
           anchor_file: Path | None) -> None:
    """Check every writer's hash chain and every signed checkpoint; say which records are
    anchored (vouched for by a checkpoint) and which come after the last one.

    A chain rewritten and re-hashed by someone who can write the database fails here unless
    they also hold the audit key. With an anchor (--anchor, or the state directory's own),
    so do checkpoints deleted to hide it, however short the trail left.

    \b
    Example:
      infrabot audit verify --db .infrabot/audit.sqlite3 --keys audit-keys.json \\
        --anchor audit-anchor.json
    """
    settings = _settings(db, state_dir)
    target = db if db is not None else settings.audit_target
    keys_path = keys_file if keys_file is not None else settings.audit_keys_dir / PUBLIC_FILE
    own = db is None or (isinstance(settings.audit_target, Path)
                         and db.resolve() == settings.audit_target.resolve())
    anchor_path = anchor_file if anchor_file is not None else settings.audit_keys_dir / ANCHOR_FILE
    anchor = _anchor_for_verify(anchor_path, given=anchor_file is not None, own=own)
    with opened(target, Unreadable) as store:
        snapshot = store.snapshot()
        missing_guards = store.missing_guards()
    keys = _keys_for_verify(keys_path, given=keys_file is not None,
                            required=bool(snapshot.checkpoints) or anchor is not None)
    # a writer with no checkpoint left is held to the bounds writers are configured with here
    policy = AnchorPolicy(settings.audit_checkpoint_records, settings.audit_checkpoint_seconds)
    try:
        report = check_trail(snapshot, keys, policy, anchor)
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
    # the state directory's own SQLite file, and no audit key nor anchor beside it: no writer
    # there ever signed a checkpoint, so none can have been deleted
    never_signed = (anchor is None and own and isinstance(settings.audit_target, Path)
                    and not (settings.audit_keys_dir / PRIVATE_FILE).exists()
                    and not (settings.audit_keys_dir / PUBLIC_FILE).exists())
    if anchor is None and not never_signed:
        click.echo(f"note: not held to an anchor (none at {anchor_path}; pass --anchor FILE): "
                   "checkpoints deleted with the records after them, or the database replaced "
                   "by an older copy, can pass here", err=True)
    if report.unanchored:
        are = "is" if report.unanchored == 1 else "are"
        unanchored = f"{plural(report.unanchored, 'record')} {are} unanchored"
        if anchor is None and not report.checkpoints and not never_signed:
            click.echo(f"audit trail unverified: {unanchored} and the database holds no "
                       "checkpoint: cannot tell a fresh tail from a rewritten trail without an "
                       f"anchor: run verify with --anchor ({counts})")
        else:
            click.echo(f"audit trail intact, but {unanchored} (after their writer's last "
                       f"checkpoint, nothing signed vouches for them): {counts}")
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


def _anchor_for_verify(path: Path, *, given: bool, own: bool) -> str | None:
    """The anchor's JWS (not yet checked): ``--anchor``, else the state directory's when the
    database is its own and it has one; None without. One it cannot read is nothing checked."""
    if not given and (not own or not path.exists()):
        return None
    try:
        return read_anchor(path)
    except InfraBotError as exc:
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
