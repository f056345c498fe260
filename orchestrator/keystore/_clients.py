"""The clients' own key pairs (``private_key_jwt``) in a key directory: one PEM file per client,
``<kind>_<name>.pem``, owner-only, made on first use or by ``infrabot keys init``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.identity import SigningKey, alg_of, generate_private_key, signing_key_of
from orchestrator.keystore._files import locked, read_private, write_private

_CLIENT_ID = re.compile(r"(agent|client):[a-z0-9][a-z0-9_.-]{0,63}")


def client_keys_dir(keys_dir: Path) -> Path:
    """Where clients' own key pairs live under a state directory's key directory."""
    return keys_dir / "clients"


def client_key_path(directory: Path, client_id: str) -> Path:
    """Where ``client_id``'s private key lives in a key directory: ``<kind>_<name>.pem``.

    Only for ids an operator or the directory gave (never for one read from a token); an id
    that is not of the directory's form (``agent:<name>``, ``client:<name>``) is refused, so no
    id can name a path outside ``directory``."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise ConfigError(f"{client_id!r} is not a client id (agent:<name> or client:<name>)")
    return directory / f"{client_id.replace(':', '_')}.pem"


def load_client_key(directory: Path, client_id: str) -> SigningKey | None:
    """``client_id``'s own key pair from a key directory, or None when it holds none."""
    path = client_key_path(directory, client_id)
    if not path.exists():
        return None
    private = read_private(path)
    return signing_key_of(private, alg_of(private))


@dataclass(frozen=True)
class ClientKeyInit:
    """What :func:`init_client_key` did: the key now in place, and the one it replaced."""

    key: SigningKey
    created: bool
    replaced: SigningKey | None = None


def init_client_key(directory: Path, client_id: str, alg: str, *,
                    rotate: bool = False) -> ClientKeyInit:
    """Make ``client_id``'s key pair in ``directory`` (0700; the private key 0600) unless one is
    there; with ``rotate``, replace it by a new one. A process already holding the old key keeps
    using it until it loads the key again (a worker does at start)."""
    path = client_key_path(directory, client_id)
    with locked(directory):
        existing = load_client_key(directory, client_id)
        if existing is not None and not rotate:
            return ClientKeyInit(existing, created=False)
        write_private(path, generate_private_key(alg))
        key = load_client_key(directory, client_id)
    assert key is not None
    return ClientKeyInit(key, created=True, replaced=existing)


def client_key(directory: Path, client_id: str, alg: str) -> SigningKey:
    """An agent's or the orchestrator's own key pair for ``private_key_jwt``, made on first use
    (embedded mode, and the orchestrator's own key). The authorization server never reads it:
    it knows a client only by the public keys in its registry."""
    return init_client_key(directory, client_id, alg).key
