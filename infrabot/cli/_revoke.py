"""``infrabot revoke``: revoke a token, every token of a user, or every token of a run, at the
running authorization server (as the trusted orchestrator client)."""

from __future__ import annotations

from pathlib import Path

import click

from infrabot.cli._common import CommandError, endpoints, load_settings, state_dir_option
from infrabot.cli._held_keys import ORCHESTRATOR, orchestrator_key
from infrabot.cli._users import resolve_user
from orchestrator.client import AuthClient


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


def _revoked_line(result: dict[str, object]) -> str:
    """The server's answer as one sentence that says what is now refused."""
    kind = result.get("revoked")
    if kind == "user":
        return (f"revoked every delegation of {result.get('user')} (revocation version "
                f"{result.get('version')}): tokens rooted before now are refused")
    if kind == "run":
        return f"revoked every token of run {result.get('run_id')}"
    return f"revoked token {result.get('jti')} and every token exchanged from it"
