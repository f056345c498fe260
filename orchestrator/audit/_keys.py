"""The audit key: what signs checkpoints, kept in the state directory and never in the database.

Layout under ``<state_dir>/keys/audit/`` (directory 0700)::

    audit.pem         the current private key, PKCS#8, mode 0600
    audit-keys.json   {"keys": [public JWK + "created_at" (+ "retired_at")]}: every audit
                      public key this directory ever used, current and retired

One key per state directory, shared by every writer that uses the directory. It is not the
token signing key: holding one never lets anyone forge the other.

Rotation (:meth:`AuditKeys.rotate`, ``infrabot audit keys --rotate``) writes a new private key
over ``audit.pem`` (the old private key is gone) and adds the new public key to
``audit-keys.json``, marking the previous one ``retired_at``. Retired public keys stay published
for ever: the checkpoints they signed must stay verifiable. A running writer picks up the new
key at its next checkpoint (one ``stat`` per checkpoint).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.identity import (
    JWKSet,
    PublicKey,
    SigningKey,
    alg_of,
    generate_private_key,
    signing_key_of,
)
from orchestrator.keystore import locked, read_private, write_private

PRIVATE_FILE = "audit.pem"
PUBLIC_FILE = "audit-keys.json"
ALGS = ("ES256", "RS256", "EdDSA")
_PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use",
                             "created_at", "retired_at"})


class AuditKeys:
    """The audit signing key of one state directory (the writer's side)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._mtime: int | None = None
        self._key: SigningKey | None = None

    @classmethod
    def open(cls, directory: Path, alg: str, *, now: int) -> AuditKeys:
        """Load the audit key, generating the first one (and publishing it) if there is none."""
        keys = cls(directory)
        with locked(directory):
            if not (directory / PRIVATE_FILE).exists():
                keys._add(alg, now)
        keys.current()
        return keys

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def public_file(self) -> Path:
        return self._dir / PUBLIC_FILE

    def current(self) -> SigningKey:
        """The current key, reloaded if another process rotated it since the last call."""
        path = self._dir / PRIVATE_FILE
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise ConfigError(f"audit key missing: {path}") from exc
        if self._key is None or mtime != self._mtime:
            private = read_private(path)
            self._key, self._mtime = signing_key_of(private, alg_of(private)), mtime
        return self._key

    def rotate(self, *, now: int) -> SigningKey:
        """A new current key; the previous public key stays published, marked retired."""
        alg = self.current().alg
        with locked(self._dir):
            self._add(alg, now)
        return self.current()

    def _add(self, alg: str, now: int) -> None:
        """Generate a key, publish its public half, then make it current (caller holds the
        lock). Published first: a checkpoint signed by the new key always has its key listed."""
        key = signing_key_of(generate_private_key(alg), alg)
        document = _read_document(self.public_file) if self.public_file.exists() else {
            "keys": []}
        for jwk in document["keys"]:
            jwk.setdefault("retired_at", now)
        document["keys"].append({**key.public.jwk, "created_at": now})
        tmp = self.public_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.public_file)
        write_private(self._dir / PRIVATE_FILE, key.private)


def public_document(path: Path) -> dict[str, Any]:
    """The published audit keys from ``path`` (an ``audit-keys.json`` or an export of it), with
    only public members kept; :class:`ConfigError` naming the file if it is not a key set."""
    document = _read_document(path)
    keys = [{k: v for k, v in jwk.items() if k in _PUBLIC_MEMBERS}
            for jwk in document["keys"] if isinstance(jwk, dict)]
    return {"keys": keys}


def trusted_keys(path: Path) -> dict[str, PublicKey]:
    """Audit public keys by ``kid`` from a trusted file; a JWK whose ``kid`` is not its RFC 7638
    thumbprint, or that carries private members, is not used."""
    document = _read_document(path)
    parsed = JWKSet.from_dict(document, ALGS)
    keys = {kid: key for kid in parsed.kids() if (key := parsed.get(kid)) is not None}
    if not keys:
        raise ConfigError(f"{path} holds no usable audit public key")
    return keys


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no audit key file at {path}") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ConfigError(f"cannot read audit keys {path}: {type(exc).__name__}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError(f"{path} is not a JWKS (an object with a 'keys' array)")
    return document
