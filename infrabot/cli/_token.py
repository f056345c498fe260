"""``infrabot token user|assertion|proof|inspect``.

``user`` and ``assertion`` print only the token on stdout, so ``$(infrabot token user user:sam)``
captures it; everything meant for people goes to stderr.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import click
import httpx

from infrabot.cli._common import CommandError, load_settings, state_dir_option
from infrabot.cli._held_keys import (
    ORCHESTRATOR,
    agent_dpop_key,
    embedded,
    held_client_key,
    orchestrator_key,
)
from infrabot.cli._inspect import (
    at_running_servers,
    inspect_token,
    render,
    running_auth_server,
)
from infrabot.cli._users import known_user
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.identity import Context, make_assertion, make_proof
from orchestrator.workflows import load_directory


@click.group("token")
def token() -> None:
    """Make and inspect tokens (a user token stands in for an IdP login).

    Tokens and assertions name the issuer of the system `infrabot serve` runs from the state
    directory (its endpoints.json), or the configured ports when none runs.

    \b
    Example:
      TOKEN=$(infrabot token user user:sam --env prod --trigger ci_pipeline)
      infrabot token inspect "$TOKEN"
    """


@token.command("user")
@click.argument("user")
@click.option("--scope", "scopes", multiple=True,
              help="A scope to ask for (repeatable), urn:infra:repo:read or repo:read; default "
                   "every permission the user holds.")
@click.option("--may-act", default="agent:infrabot", show_default=True,
              help="The agent that may exchange this token.")
@click.option("--env", "environment", default="staging", show_default=True)
@click.option("--trigger", type=click.Choice(["ci_pipeline", "manual"]), default="manual",
              show_default=True, help="What started the run; prod writes need ci_pipeline.")
@click.option("--repository", default="acme/service-x", show_default=True)
@click.option("--commit", default="0000000", show_default=True)
@click.option("--run", "run_id", default=None, help="Run id; default a fresh one.")
@state_dir_option
def user_token(user: str, scopes: tuple[str, ...], may_act: str, environment: str, trigger: str,
               repository: str, commit: str, run_id: str | None, state_dir: Path | None) -> None:
    """Issue a root token for USER (sam or user:sam) that MAY_ACT may exchange.

    With a system running from the state directory, its authorization server issues the token
    (the orchestrator's RFC 7523 grant), so it is rooted in that system's revocation registry and
    audited there. Otherwise it is issued here, rooted in the Redis registry if INFRABOT_REDIS_URL
    names one; with no Redis, in this process's own registry, which no server started later
    vouches for (it refuses the token: registry_reset).

    \b
    Example:
      TOKEN=$(infrabot token user user:sam --env prod --trigger ci_pipeline)
    """
    # Deferred: the servers' stack is heavy to import
    from infrabot.stack import ORCHESTRATOR_CLIENT, Stack

    settings = at_running_servers(load_settings(state_dir))
    try:
        ctx = Context(trigger=trigger, environment=environment, repository=repository,
                      commit=commit, run_id=run_id or f"run-{uuid.uuid4().hex[:12]}")
    except ValueError as exc:
        raise CommandError(f"bad context value: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    user = known_user(directory, user)
    entry = directory.users[user]
    if entry.disabled:
        raise CommandError(f"invalid_grant (unknown_user): {user} is not an active user")
    wanted = ([s if s.startswith("urn:") else f"urn:infra:{s}" for s in scopes]
              or list(entry.permissions))
    running = running_auth_server(settings)
    if running is not None:
        issued = _root_from(running, settings, user, wanted, ctx, may_act)
    else:
        if not embedded(settings):  # serve's host only, which holds its keys: none made here
            orchestrator_key(settings)
        stack = Stack.build(settings)
        try:
            response = stack.auth.issue_root(user, wanted, ctx, may_act, ORCHESTRATOR_CLIENT)
        finally:
            stack.close()
        issued = {"access_token": response.access_token, "scope": response.scope,
                  "expires_in": response.expires_in}
    dropped = [s for s in dict.fromkeys(wanted) if s not in str(issued["scope"]).split()]
    issuer = running or ("this process (no running system; registry: "
                         + ("Redis)" if settings.redis_url else "this process only)"))
    click.echo(f"issued for {user}: scope {issued['scope']!r}, expires in "
               f"{issued['expires_in']}s, by {issuer}"
               + (f"; dropped {' '.join(dropped)}" if dropped else ""), err=True)
    click.echo(issued["access_token"])


def _root_from(auth_url: str, settings: Settings, user: str, scopes: list[str], ctx: Context,
               may_act: str) -> dict[str, object]:
    """The root token from the running authorization server, asked as the orchestrator."""
    with AuthClient(auth_url, ORCHESTRATOR, orchestrator_key(settings)) as client:
        return client.root_token(user, scopes, ctx, may_act)


@token.command("assertion")
@click.argument("agent")
@click.option("--ttl", type=click.IntRange(10, 300), default=60, show_default=True,
              help="Seconds the assertion is valid (its exp - iat); the server allows up to "
                   "INFRABOT_ASSERTION_MAX_LIFETIME_SECONDS.")
@state_dir_option
def assertion(agent: str, ttl: int, state_dir: Path | None) -> None:
    """Print a private_key_jwt client assertion (RFC 7523) signed by AGENT's own key.

    \b
    Example:
      curl -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \\
           -d client_assertion=$(infrabot token assertion agent:infrabot) ...
    """
    settings = at_running_servers(load_settings(state_dir))
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    if agent not in directory.client_ids():
        raise CommandError(f"{agent} is not an agent or client in the directory")
    key = held_client_key(settings, agent)
    click.echo(make_assertion(key, issuer=agent, subject=agent,
                              audience=f"{settings.auth_url}/token", now=int(time.time()),
                              ttl=ttl))


@token.command("proof")
@click.argument("agent")
@click.option("--url", default=None, help="The URL the request goes to; default the running "
                                          "authorization server's token endpoint.")
@click.option("--method", default="POST", show_default=True)
@click.option("--token", "access_token", default=None,
              help="The access token the request presents (its hash goes in the proof: ath).")
@state_dir_option
def proof(agent: str, url: str | None, method: str, access_token: str | None,
          state_dir: Path | None) -> None:
    """Print a DPoP proof (RFC 9449) for one request, signed by AGENT's DPoP key, with the
    running authorization server's current nonce. A proof is good for one request, 60 s.
    With a shared broker, only on a host of AGENT's workers (the key their worker made).

    \b
    Example:
      curl -H "DPoP: $(infrabot token proof agent:infrabot)" \\
           -d client_assertion=$(infrabot token assertion agent:infrabot) ...
    """
    settings = at_running_servers(load_settings(state_dir))
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    if agent not in directory.agents:
        raise CommandError(f"{agent} is not an agent in the directory")
    key = agent_dpop_key(settings, agent)
    token_url = f"{settings.auth_url}/token"
    try:
        nonce = httpx.post(token_url, data={"grant_type": "nonce"},
                           timeout=5.0).headers.get("dpop-nonce")
    except httpx.HTTPError:
        nonce = None  # no server answering: a proof without a nonce
    click.echo(make_proof(key, method=method,
                          url=url or token_url, now=int(time.time()),
                          access_token=access_token, nonce=nonce))


@token.command("inspect")
@click.argument("token_value", metavar="TOKEN")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@state_dir_option
def inspect(token_value: str, as_json: bool, state_dir: Path | None) -> None:
    """Verify TOKEN against this state directory's keys and show its chain.

    Revocation is asked of the Redis registry when INFRABOT_REDIS_URL names one, else of the
    system running from the state directory (RFC 7662 introspection), else not checked.
    Exit status 0 when the token verifies and is not revoked, 1 otherwise.

    \b
    Example:
      infrabot token inspect "$(infrabot token user user:sam)"
    """
    settings = at_running_servers(load_settings(state_dir, state="existing"))
    result = inspect_token(settings, token_value.strip())
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        render(result)
    raise SystemExit(0 if result["valid"] else 1)
