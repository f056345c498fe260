"""``infrabot revoke``: revoke a token, every token of a user, or every token of a run, at the
running authorization server (as the trusted orchestrator client)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from infrabot.cli._common import CommandError, endpoints, load_settings, state_dir_option
from infrabot.cli._held_keys import ORCHESTRATOR, orchestrator_key
from infrabot.cli._users import resolve_user
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError
from orchestrator.runs import RunStore


@click.command("revoke")
@click.option("--token", "token_value", help="A token; every token exchanged from it goes too.")
@click.option("--jti", help="A token id.")
@click.option("--user", help="Every delegation of this user: sam or user:sam (the directory "
              "must know it).")
@click.option("--run", "run_id", help="Every token of this run.")
@state_dir_option
def revoke(token_value: str | None, jti: str | None, user: str | None, run_id: str | None,
           state_dir: Path | None) -> None:
    """Revoke by token, jti, user or run (exactly one), cascading down the chain.

    \b
    Example:
      infrabot revoke --user user:sam
    """
    given = {k: v for k, v in {"token": token_value, "jti": jti, "user": user,
                               "run_id": run_id}.items() if v}
    if len(given) != 1:
        raise CommandError("give exactly one of --token, --jti, --user, --run")
    settings = load_settings(state_dir, state="existing")
    if user:
        given["user"] = resolve_user(settings, user)
    urls = endpoints(settings)
    with AuthClient(urls["auth"], ORCHESTRATOR, orchestrator_key(settings)) as client:
        if token_value:
            client.revoke(token_value)
            # RFC 7009: the server answers alike for a token it never issued.
            click.echo("revocation sent: if the server issued this token, it and every "
                       "token exchanged from it are revoked")
            return
        result = client.revoke_by(**given)
    click.echo(_revoked_line(result))
    if run_id and not _in_run_log(settings, run_id):
        # Revoked all the same: a run may be revoked before it starts. A mistyped id in an
        # incident must not read as the run stopped.
        click.echo(f"note: the run log has no run {run_id!r}; if you meant a run already "
                   "started, check the id (`infrabot runs list`)", err=True)


def _in_run_log(settings: Settings, run_id: str) -> bool:
    """Whether the run log holds ``run_id``; True when it cannot say (none here, unreadable):
    the note is for an id the run log can be asked about."""
    try:
        with RunStore(settings.runs_target, read_only=True) as runs:
            return runs.get(run_id) is not None
    except (InfraBotError, sqlite3.Error, ValueError):
        return True


def _revoked_line(result: dict[str, object]) -> str:
    """The server's answer as one sentence that says what is now refused."""
    kind = result.get("revoked")
    if kind == "user":
        return (f"revoked every delegation of {result.get('user')} (revocation version "
                f"{result.get('version')}): tokens rooted before now are refused")
    if kind == "run":
        return f"revoked every token of run {result.get('run_id')}"
    return f"revoked token {result.get('jti')} and every token exchanged from it"
