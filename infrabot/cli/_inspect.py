"""``infrabot token inspect``: verify a token against a state directory's keys, ask whoever
keeps its revocations, and show the result (the command itself is in :mod:`._token`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from infrabot._delegation_view import chain_lines, token_chain
from infrabot.cli._common import CommandError, endpoints
from infrabot.cli._held_keys import ORCHESTRATOR, orchestrator_key
from orchestrator._display import display_safe
from orchestrator.client import AuthClient
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.errors import InvalidToken, OAuthError, Unavailable
from orchestrator.identity import AccessClaims, TokenVerifier, VerifierPolicy, unverified_payload
from orchestrator.keystore import KeyRing
from orchestrator.registry import open_store


def running_auth_server(settings: Settings) -> str | None:
    """The URL of the authorization server running from this state directory, or None."""
    try:
        return endpoints(settings)["auth"]
    except CommandError:
        return None


def at_running_servers(settings: Settings) -> Settings:
    """``settings`` with the ports of the servers ``infrabot serve`` runs from this state
    directory (it may listen on ports the OS chose), so tokens and assertions made here name
    the issuer and audiences that system uses; unchanged when nothing runs."""
    try:
        urls = endpoints(settings)
    except CommandError:
        return settings
    update: dict[str, object] = {}
    declared = dict(settings.service_ports)
    for name, url in urls.items():
        try:
            port = urlsplit(url).port
        except ValueError:
            continue
        if port and f"{name}_port" in Settings.model_fields:
            update[f"{name}_port"] = port
        elif port and name != "webhooks":  # a service declared by an OpenAPI document
            declared[name] = port
    return settings.model_copy(update={**update, "service_ports": declared})


def inspect_token(settings: Settings, raw: str) -> dict[str, object]:
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
    audiences = frozenset({settings.issuer_url, *(settings.service_url(n) for n in SERVICE_NAMES),
                           *(settings.service_url(n) for n in settings.service_ports)})
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
                  expires_in=claims.exp - now,
                  delegation_chain=token_chain(settings, claims))
    result["revocation"] = _revocation(settings, claims, result, raw)
    return result


def _issuer_gone(settings: Settings, issuer: object) -> str:
    """Why a token this state directory's key signed names another issuer: the server that
    issued it (on ports the OS chose) has stopped, or another one runs now."""
    running = running_auth_server(settings)
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
        running = running_auth_server(settings)
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
    key = orchestrator_key(settings)
    try:
        with AuthClient(auth_url, ORCHESTRATOR, key) as client:
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


def render(result: dict[str, object]) -> None:
    """The result for a person. A refused token's claims are whatever its sender wrote: every
    piece of text is shown display-safe and never read as markup."""
    console = Console(stderr=False, highlight=False)
    claims = result.get("claims")
    if result["valid"]:
        console.print(f"[green]valid[/green]: expires in {result['expires_in']}s; "
                      f"revocation check: {display_safe(result.get('revocation'))}",
                      markup=True)
    else:
        console.print(Text.assemble(("invalid", "red"), f": {display_safe(result['reason'])}: "
                                                        f"{display_safe(result.get('error'))}"))
        if claims and "chain" not in result:  # a revoked token's claims were verified
            console.print("[dim]claims below are UNVERIFIED[/dim]")
    if not isinstance(claims, dict):
        return
    # Claims without a principal (a DPoP proof's, say) get no principal line, never "None".
    if claims.get("sub") is not None or isinstance(claims.get("act"), dict):
        console.print(_principal_tree(claims))
    for name in ("aud", "scope", "ctx", "client_id", "may_act", "cnf", "jti", "exp"):
        if name in claims:
            console.print(Text(f"  {name}: {display_safe(_shown(name, claims[name]))}"))
    verdict = result.get("delegation_chain")
    if isinstance(verdict, dict):
        why = f" ({verdict['reason']})" if verdict.get("reason") else ""
        console.print(Text(display_safe(f"  delegation_chain: {verdict['status']}{why}")))
        for line in chain_lines(verdict["records"]):
            console.print(Text(f"    {display_safe(line)}"))


def _principal_tree(claims: dict[str, object]) -> Tree:
    """The principal (``sub``), and under it the ``act`` chain's actors in the order they
    acted."""
    sub = claims.get("sub")
    shown = display_safe(sub) if sub is not None else "(no sub claim)"
    tree = Tree(Text.assemble((shown, "bold"), " (principal)"))
    node = tree
    chain = []
    act = claims.get("act")
    while isinstance(act, dict):
        chain.append(act.get("sub"))
        act = act.get("act")
    for actor in reversed(chain):
        node = node.add(Text(f"acts: {display_safe(actor)}"))
    return tree


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

