"""``infrabot token user|assertion|inspect``.

``user`` and ``assertion`` print only the token on stdout, so ``$(infrabot token user user:sam)``
captures it; everything meant for people goes to stderr.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.tree import Tree

from orchestrator.cli._common import CommandError, endpoints, load_settings, state_dir_option
from orchestrator.cli._users import known_user
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.errors import InvalidToken, OAuthError, Unavailable
from orchestrator.identity import (
    AccessClaims,
    Context,
    KeyRing,
    SigningKey,
    TokenVerifier,
    VerifierPolicy,
    client_key,
    load_client_key,
    load_directory,
    make_assertion,
    unverified_payload,
)
from orchestrator.registry import open_store


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
    from orchestrator.stack import ORCHESTRATOR_CLIENT, Stack  # here: slow to import

    settings = _at_running_servers(load_settings(state_dir))
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
    running = _running_auth_server(settings)
    if running is not None:
        issued = _root_from(running, settings, user, wanted, ctx, may_act)
    else:
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


def _running_auth_server(settings: Settings) -> str | None:
    try:
        return endpoints(settings)["auth"]
    except CommandError:
        return None


def _root_from(auth_url: str, settings: Settings, user: str, scopes: list[str], ctx: Context,
               may_act: str) -> dict[str, object]:
    """The root token from the running authorization server, asked as the orchestrator."""
    from orchestrator.client import AuthClient
    from orchestrator.stack import ORCHESTRATOR_CLIENT, client_keys_dir

    key = client_key(client_keys_dir(settings), ORCHESTRATOR_CLIENT, settings.signing_alg)
    with AuthClient(auth_url, ORCHESTRATOR_CLIENT, key) as client:
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
    settings = _at_running_servers(load_settings(state_dir))
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    if agent not in directory.client_ids():
        raise CommandError(f"{agent} is not an agent or client in the directory")
    key = _signing_key_of(settings, agent)
    click.echo(make_assertion(key, issuer=agent, subject=agent,
                              audience=f"{settings.auth_url}/token", now=int(time.time()),
                              ttl=ttl))


def _signing_key_of(settings: Settings, client_id: str) -> SigningKey:
    """The client's own key. Embedded, it is made on first use, as the embedded system makes
    it; distributed, only `infrabot keys init` makes keys (a new one here would be unknown to
    the authorization server, which knows clients by their registered public keys)."""
    from orchestrator.stack import client_keys_dir, is_embedded

    where = client_keys_dir(settings)
    if is_embedded(settings):
        return client_key(where, client_id, settings.signing_alg)
    key = load_client_key(where, client_id)
    if key is None:
        raise CommandError(f"no key for {client_id} in {where}: create it with `infrabot keys "
                           f"init {client_id} --state-dir {settings.state_dir}` and register "
                           "its public key (`infrabot keys register`)")
    return key


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
    settings = _at_running_servers(load_settings(state_dir, state="existing"))
    result = _inspect(settings, token_value.strip())
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        _render(result)
    raise SystemExit(0 if result["valid"] else 1)


def _at_running_servers(settings: Settings) -> Settings:
    """``settings`` with the ports of the servers ``infrabot serve`` runs from this state
    directory (it may listen on ports the OS chose), so tokens and assertions made here name
    the issuer and audiences that system uses; unchanged when nothing runs."""
    try:
        urls = endpoints(settings)
    except CommandError:
        return settings
    update: dict[str, int] = {}
    for name, url in urls.items():
        try:
            port = urlsplit(url).port
        except ValueError:
            continue
        if port and f"{name}_port" in Settings.model_fields:
            update[f"{name}_port"] = port
    return settings.model_copy(update=update)


def _inspect(settings: Settings, raw: str) -> dict[str, object]:
    now = int(time.time())
    signing = settings.keys_dir / "signing"
    if not (signing / "keyring.json").is_file():  # reading makes none (KeyRing.open would)
        raise CommandError(f"no signing keys in {signing}: no authorization server has run from "
                           "this state directory, so it issued no token")
    ring = KeyRing.open(signing, settings.signing_alg, now=now)
    verifier = TokenVerifier(ring.jwks(), VerifierPolicy(
        issuer=settings.issuer_url, allowed_algs=settings.allowed_algs,
        leeway=settings.leeway_seconds, max_bytes=settings.max_token_bytes,
        max_depth=settings.max_depth))
    audiences = frozenset({settings.issuer_url, *(settings.service_url(n) for n in SERVICE_NAMES)})
    result: dict[str, object] = {"valid": False, "now": now}
    try:
        claims = verifier.verify(raw, audience=audiences, now=now).claims
    except InvalidToken as exc:
        unverified = _unverified(raw)
        result.update(reason=exc.reason, error=exc.message, claims=unverified)
        if exc.reason == "issuer_mismatch" and isinstance(unverified, dict):
            result.update(reason="issuer_not_running",
                          error=_issuer_gone(settings, unverified.get("iss")))
        return result
    result.update(valid=True, reason="ok", claims=claims.public_view(), chain=claims.chain(),
                  expires_in=claims.exp - now)
    result["revocation"] = _revocation(settings, claims, result, raw)
    return result


def _issuer_gone(settings: Settings, issuer: object) -> str:
    """Why a token this state directory's key signed names another issuer: the server that
    issued it (on ports the OS chose) has stopped, or another one runs now."""
    running = _running_auth_server(settings)
    now = (f"the server running from this state directory now is {running}" if running
           else "no server runs from this state directory now")
    return (f"issued by {issuer}, a server of this state directory that is not running any "
            f"more ({now}); tokens are checked only while their issuer runs, or with "
            "INFRABOT_ISSUER set to it")


def _revocation(settings: Settings, claims: AccessClaims, result: dict[str, object],
                raw: str) -> str:
    """What the revocation registry says: Redis, read here, when configured (it names the
    reason); else the running system's authorization server (RFC 7662 introspection), whose
    in-process registry only it can read; else nothing can be asked."""
    if not settings.redis_url:
        running = _running_auth_server(settings)
        if running is None:
            return "not checked: no running system and no Redis registry (set INFRABOT_REDIS_URL)"
        return _introspected(settings, running, raw, result)
    store = open_store(settings.redis_url)
    try:
        store.check(claims)
    except InvalidToken as exc:
        result.update(valid=False, reason=exc.reason, error=exc.message)
        return f"refused ({exc.reason})"
    except Unavailable:
        result.update(valid=False, reason="revocation_unavailable",
                      error="the revocation registry cannot be reached")
        return "unavailable: treated as invalid"
    finally:
        store.close()
    return "not revoked"


def _introspected(settings: Settings, auth_url: str, raw: str, result: dict[str, object]) -> str:
    from orchestrator.client import AuthClient
    from orchestrator.stack import ORCHESTRATOR_CLIENT, client_keys_dir

    key = client_key(client_keys_dir(settings), ORCHESTRATOR_CLIENT, settings.signing_alg)
    try:
        with AuthClient(auth_url, ORCHESTRATOR_CLIENT, key) as client:
            active = client.introspect(raw).get("active") is True
    except (Unavailable, OAuthError):
        result.update(valid=False, reason="revocation_unavailable",
                      error=f"the authorization server at {auth_url} could not be asked")
        return "unavailable: treated as invalid"
    if not active:
        result.update(valid=False, reason="inactive",
                      error="the running authorization server says the token is not active "
                            "(revoked, or its registry restarted)")
        return f"refused by {auth_url} (introspection: inactive)"
    return f"not revoked (asked {auth_url})"


def _unverified(raw: str) -> object:
    """Claims decoded WITHOUT verification, shown only to explain a refusal."""
    return unverified_payload(raw, max_bytes=len(raw))


def _render(result: dict[str, object]) -> None:
    console = Console(stderr=False, highlight=False)
    claims = result.get("claims")
    if result["valid"]:
        console.print(f"[green]valid[/green]: expires in {result['expires_in']}s; "
                      f"revocation check: {result.get('revocation')}")
    else:
        console.print(f"[red]invalid[/red]: {result['reason']}: {result.get('error')}")
        if claims and "chain" not in result:  # a revoked token's claims were verified
            console.print("[dim]claims below are UNVERIFIED[/dim]")
    if not isinstance(claims, dict):
        return
    tree = Tree(f"[bold]{claims.get('sub')}[/bold] (principal)")
    node = tree
    chain = []
    act = claims.get("act")
    while isinstance(act, dict):
        chain.append(act.get("sub"))
        act = act.get("act")
    for actor in reversed(chain):
        node = node.add(f"acts: {actor}")
    console.print(tree)
    for name in ("aud", "scope", "ctx", "client_id", "may_act", "jti", "exp"):
        if name in claims:
            console.print(f"  {name}: {_shown(name, claims[name])}", markup=False)


def _shown(name: str, value: object) -> str:
    """A claim as a person reads it: objects as key=value, times also as UTC."""
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if name == "exp" and isinstance(value, int) and not isinstance(value, bool):
        try:
            when = datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            return str(value)
        return f"{value} ({when})"
    return str(value)

