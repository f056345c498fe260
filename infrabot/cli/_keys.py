"""``infrabot keys init|register|list|revoke``: clients' key pairs and the server's registry.

``init`` runs on the host that will sign as the client (an agent's worker host) and prints only
the public JWK Set; ``register``, ``list`` and ``revoke`` are an administrator's, run where the
authorization server's configuration is (its state directory, or the database once
``INFRABOT_AUTH_DATABASE_URL`` or ``INFRABOT_DATABASE_URL`` selects one: see
:func:`orchestrator.authserver.open_registry`); with a shared broker, ``register`` and ``revoke``
refuse settings that name no registry of serve's (a worker host's: docs/deploy.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from infrabot.cli._common import CommandError, load_settings, state_dir_option
from infrabot.cli._dpop_key_revoke import revoke_dpop_key
from infrabot.cli._worker import serves_own
from orchestrator.authserver import KeyInUse, KeyRevoked, open_registry
from orchestrator.config import Settings
from orchestrator.identity import (
    NotAPublicKeySet,
    PrivateKeyMaterial,
    PublicKey,
    public_keys_to_register,
)
from orchestrator.keystore import client_keys_dir, init_client_key
from orchestrator.workflows import load_directory

MAX_JWKS_BYTES = 64 * 1024
_REGISTER_ONLY = "register only the public JWK Set that `infrabot keys init` prints"


@click.group("keys")
def keys() -> None:
    """Clients' own key pairs (private_key_jwt) and the authorization server's registry of
    their public keys.

    \b
    Example (rotating agent:argocd's key without downtime):
      infrabot keys init agent:argocd --rotate --state-dir /srv/argocd > new.jwks
      infrabot keys register agent:argocd --jwks new.jwks
      (start a worker for argocd on the new key, then stop the old one)
      infrabot keys revoke agent:argocd OLD_KID
    """


def _known_client(settings: Settings, client_id: str) -> None:
    """Refuse a client id the directory does not list (looked up as a name, never a path)."""
    path = settings.workflows_dir / "directory.yaml"
    if client_id not in load_directory(path).client_ids():
        raise CommandError(f"unknown client {client_id!r}: not an agent or client in {path}")


def _serves_registry(settings: Settings, command: str) -> None:
    """Refuse to write a client registry `serve` never reads. With a shared broker (hosts of
    their own), a registry is serve's only where the settings name the authorization server's
    database (INFRABOT_AUTH_DATABASE_URL) or in serve's own state directory; a worker host's
    settings name neither (its INFRABOT_DATABASE_URL is the run log's: docs/deploy.md)."""
    if settings.broker_kind == "memory" or settings.auth_database_url is not None \
            or serves_own(settings):
        return
    raise CommandError(
        f"refused: no authorization server's registry here (INFRABOT_AUTH_DATABASE_URL is unset "
        f"and {settings.state_dir} is not serve's state directory): run `infrabot keys {command}` "
        "on the auth host, or set INFRABOT_AUTH_DATABASE_URL to serve's auth database")


def _owner_only(*directories: Path) -> None:
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)


@keys.command("init")
@click.argument("client_id")
@click.option("--rotate", is_flag=True, help="Replace an existing key pair with a new one.")
@state_dir_option
def init(client_id: str, rotate: bool, state_dir: Path | None) -> None:
    """Create CLIENT_ID's key pair in the state directory (kept if it exists, unless
    --rotate); print its public JWK Set, the only thing to hand to `keys register`.

    The private key file is mode 0600, its directories 0700. A running worker keeps the key it
    started with: after --rotate, register the new key, then restart the worker.

    \b
    Example:
      infrabot keys init agent:argocd --state-dir /srv/argocd > argocd.jwks
    """
    settings = load_settings(state_dir)
    _known_client(settings, client_id)
    where = client_keys_dir(settings.keys_dir)
    try:
        _owner_only(settings.state_dir, settings.keys_dir, where)
        done = init_client_key(where, client_id, settings.signing_alg, rotate=rotate)
    except OSError as exc:
        raise CommandError(f"cannot write {client_id}'s key in {where}: "
                           f"{exc.strerror or exc}") from None
    kid = done.key.kid
    if done.replaced is not None:
        old = done.replaced.kid
        click.echo(f"rotated {client_id}: new key {kid} replaces {old} in {where}; register "
                   f"the new key, restart the worker, then `infrabot keys revoke {client_id} "
                   f"{old}`", err=True)
    elif done.created:
        click.echo(f"created key {kid} for {client_id} in {where}", err=True)
    else:
        click.echo(f"kept the existing key {kid} for {client_id} (--rotate replaces it)",
                   err=True)
    click.echo(json.dumps({"keys": [done.key.public.jwk]}, indent=2))


def _read_jwks(source: str, allowed_algs: tuple[str, ...]) -> list[PublicKey]:
    """The public keys in a JWKS file ('-' for stdin), or one line saying why not."""
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_JWKS_BYTES + 1)
        else:
            with open(source, "rb") as fp:
                raw = fp.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror or exc}") from None
    if len(raw) > MAX_JWKS_BYTES:
        raise CommandError(f"{source} is not a public JWK Set: larger than {MAX_JWKS_BYTES} "
                           "bytes")
    text = raw.decode("utf-8", errors="replace")
    if "PRIVATE KEY" in text:
        raise CommandError(f"refused: {source} holds a private key; {_REGISTER_ONLY}")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise CommandError(f"{source} is not a public JWK Set: not JSON") from None
    try:
        return public_keys_to_register(document, allowed_algs)
    except PrivateKeyMaterial as exc:
        raise CommandError(f"refused: {source}: {exc}; {_REGISTER_ONLY}") from None
    except NotAPublicKeySet as exc:
        raise CommandError(f"{source} is not a public JWK Set: {exc}") from None


@keys.command("register")
@click.argument("client_id")
@click.option("--jwks", "jwks", required=True, metavar="FILE",
              help="The client's public JWK Set (what `keys init` printed); '-' reads stdin.")
@state_dir_option
def register(client_id: str, jwks: str, state_dir: Path | None) -> None:
    """Add CLIENT_ID's public keys to the authorization server's client registry.

    Refuses private key material, clients the directory does not list and a revoked key
    (`keys revoke`); registering a key again changes nothing. A running server uses the new key
    from its next request. With a shared broker it runs on the auth host: in serve's state
    directory, or with INFRABOT_AUTH_DATABASE_URL set; elsewhere it refuses (one line).

    \b
    Example:
      infrabot keys register agent:argocd --jwks argocd.jwks
    """
    settings = load_settings(state_dir)
    _serves_registry(settings, "register")
    _known_client(settings, client_id)
    offered = _read_jwks(jwks, settings.allowed_algs)
    try:
        added = open_registry(settings).add(client_id, offered, now=int(time.time()))
    except (KeyInUse, KeyRevoked) as exc:
        raise CommandError(f"refused: {exc.message}") from None
    except OSError as exc:
        raise CommandError(f"cannot write the client registry: {exc.strerror or exc}") from None
    for key in offered:
        state = "registered" if key.kid in added else "already registered"
        click.echo(f"{state}: {client_id} {key.kid} {key.alg}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@state_dir_option
def list_keys(as_json: bool, state_dir: Path | None) -> None:
    """Show the client registry: client, kid, algorithm, when each key was added (UTC); then
    each key revoked (`keys revoke`, never registered again), marked "revoked" with its time.
    Only reads: a missing state directory (the registry's, unless INFRABOT_AUTH_DATABASE_URL or
    INFRABOT_DATABASE_URL is set) is an error, and is not made.

    \b
    Example:
      infrabot keys list
    """
    settings = load_settings(state_dir, state="stores")
    _serves_registry(settings, "list")
    registry = open_registry(settings)
    entries, revoked = registry.entries(), registry.revoked()
    if as_json:
        click.echo(json.dumps([{"client_id": e.client_id, "kid": e.kid, "alg": e.alg,
                                "added": e.added} for e in entries]
                              + [{"client_id": r.client_id, "kid": r.kid, "revoked": r.revoked}
                                 for r in revoked], indent=2))
        return
    if not entries and not revoked:
        click.echo("no keys registered", err=True)
        return
    rows = [(e.client_id, e.kid, e.alg, e.added) for e in entries] + [
        (r.client_id, r.kid, "-", f"revoked {r.revoked}") for r in revoked]
    width = max(len("client"), *(len(row[0]) for row in rows))
    kid_width = max(len("kid"), *(len(row[1]) for row in rows))
    click.echo(f"{'client':{width}}  {'kid':{kid_width}}  {'alg':5}  added")
    for client, kid, alg, added in rows:
        click.echo(f"{client:{width}}  {kid:{kid_width}}  {alg:5}  {added}")


# A kid is an RFC 7638 thumbprint in base64url, so one in 64 begins with "-": such an argument
# is a kid, not a cluster of short options (so this command has no short ones, not even -h).
@keys.command("revoke", context_settings={"ignore_unknown_options": True,
                                          "help_option_names": ["--help"]})
@click.argument("client_id")
@click.argument("kid")
@state_dir_option
def revoke(client_id: str, kid: str, state_dir: Path | None) -> None:
    """Remove key KID of CLIENT_ID from the registry for good: the next assertion signed with
    it is refused (invalid_client), and the key is never registered again (not by `keys
    register`, nor by `serve` or a worker as they start). ``dpop:AGENT`` names an agent's
    registered DPoP keys. A missing state directory (the registry's, unless
    INFRABOT_AUTH_DATABASE_URL or INFRABOT_DATABASE_URL is set) is an error, and is not made.

    \b
    Example:
      infrabot keys revoke agent:argocd 8J4f...
    """
    settings = load_settings(state_dir, state="stores")
    _serves_registry(settings, "revoke")
    registry = open_registry(settings)
    try:
        if client_id.startswith("dpop:"):  # an agent's DPoP key, and its tokens (docs/dpop.md)
            click.echo(revoke_dpop_key(settings, registry, client_id, kid))
            return
        if not registry.revoke(client_id, kid, now=int(time.time())):
            raise CommandError(f"no key {kid!r} is registered for {client_id!r}")
    except OSError as exc:
        raise CommandError(f"cannot write the client registry: {exc.strerror or exc}") from None
    finally:
        registry.close()
    click.echo(f"revoked {client_id} {kid}: assertions signed with it are refused "
               "(invalid_client)")
