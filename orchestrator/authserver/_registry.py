"""The authorization server's client registry: the public keys it knows each client by.

A client (an agent, the orchestrator) authenticates with ``private_key_jwt``; the server verifies
the assertion with a public key registered here for the client id the assertion claims, chosen
by its ``kid``. Nothing else identifies a client: no private key, no file named after a client.
Client ids are looked up as keys of a mapping only, never turned into a path. A key revoked
(``infrabot keys revoke``) is remembered by its thumbprint and never registered again.

:class:`ClientRegistry` is the interface; :class:`StateDirRegistry` keeps the registry in one
JSON file in the server's state directory, :class:`SqlClientRegistry` in a table of the
authorization server's database (``INFRABOT_AUTH_DATABASE_URL``, else ``INFRABOT_DATABASE_URL``).
:func:`open_registry` picks the back end from the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.authserver._registry_api import (
    ClientRegistry,
    KeyInUse,
    KeyRevoked,
    RegisteredKey,
    RevokedKey,
    dropped_by_renewal,
    key_in_use,
    key_revoked,
    keys_by_client,
)
from orchestrator.authserver._registry_sql import SqlClientRegistry
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.identity import PublicKey
from orchestrator.keystore import locked

__all__ = ["ClientRegistry", "KeyInUse", "KeyRevoked", "RegisteredKey", "SqlClientRegistry",
           "StateDirRegistry", "open_registry"]

REGISTRY_FILE = "client_registry.json"


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    keys: list[RegisteredKey] = []
    revoked: list[RevokedKey] = []  # thumbprints never registered again

    def refuse(self, client_id: str, keys: Sequence[PublicKey]) -> None:
        """Raise :class:`KeyRevoked` or :class:`KeyInUse` for the first key that may not be
        registered for ``client_id``."""
        revoked = {r.kid: r.client_id for r in self.revoked}
        owners = {e.kid: e.client_id for e in self.keys}
        for key in keys:
            if key.kid in revoked:
                raise key_revoked(key.kid, revoked[key.kid])
            owner = owners.get(key.kid, client_id)
            if owner != client_id:
                raise key_in_use(key.kid, owner)


class StateDirRegistry:
    """The registry as ``<keys dir>/client_registry.json`` (0600), written atomically under the
    key directory's lock; parsed again when its content changes (one read and digest per
    lookup otherwise: a file's times, inode and size can all repeat after a revoke and a
    same-size registration, on a filesystem with coarse timestamps), so a key registered or
    revoked by ``infrabot keys`` applies to the running server's next request."""

    def __init__(self, keys_dir: Path) -> None:
        self._dir = keys_dir
        self._path = keys_dir / REGISTRY_FILE
        self._seen: bytes | None = None  # the digest of the content parsed last
        self._entries: list[RegisteredKey] = []
        self._by_client: dict[str, dict[str, PublicKey]] = {}

    def keys_of(self, client_id: str) -> Mapping[str, PublicKey]:
        self._refresh()
        return self._by_client.get(client_id, {})

    def entries(self, client_id: str | None = None) -> list[RegisteredKey]:
        self._refresh()
        return sorted((e for e in self._entries if client_id in (None, e.client_id)),
                      key=lambda e: (e.client_id, e.added_at, e.kid))

    def revoked(self) -> list[RevokedKey]:
        return sorted(self._read().revoked, key=lambda r: (r.client_id, r.revoked_at, r.kid))

    def add(self, client_id: str, keys: Sequence[PublicKey], *, now: int) -> list[str]:
        with locked(self._dir):
            current = self._read()
            current.refuse(client_id, keys)
            known = {e.kid for e in current.keys}
            added: list[str] = []
            for key in keys:
                if key.kid not in known:
                    current.keys.append(RegisteredKey(client_id=client_id, kid=key.kid,
                                                      alg=key.alg, added_at=now, jwk=key.jwk))
                    known.add(key.kid)
                    added.append(key.kid)
            if added:
                self._write(current)
        return added

    def renew(self, client_id: str, key: PublicKey, *, now: int, keep: int,
              since: int) -> None:
        with locked(self._dir):
            current = self._read()
            current.refuse(client_id, [key])
            dropped = {key.kid} | dropped_by_renewal(
                (e for e in current.keys if e.client_id == client_id), key.kid,
                keep=keep, since=since)
            current.keys = [e for e in current.keys if e.kid not in dropped]
            current.keys.append(RegisteredKey(client_id=client_id, kid=key.kid, alg=key.alg,
                                              added_at=now, jwk=key.jwk))
            self._write(current)

    def remove(self, client_id: str, kid: str) -> bool:
        return self._unregister(client_id, kid, revoked_at=None)

    def revoke(self, client_id: str, kid: str, *, now: int, unregistered: bool = False) -> bool:
        return self._unregister(client_id, kid, revoked_at=now, unregistered=unregistered)

    def _unregister(self, client_id: str, kid: str, *, revoked_at: int | None,
                    unregistered: bool = False) -> bool:
        with locked(self._dir):
            current = self._read()
            kept = [e for e in current.keys if (e.client_id, e.kid) != (client_id, kid)]
            known = {e.kid for e in current.keys} | {r.kid for r in current.revoked}
            if len(kept) == len(current.keys) and (not unregistered or kid in known):
                return False
            current.keys = kept
            if revoked_at is not None:
                current.revoked.append(RevokedKey(client_id=client_id, kid=kid,
                                                  revoked_at=revoked_at))
            self._write(current)
        return True

    def close(self) -> None:
        """Nothing is held open between calls."""

    def _refresh(self) -> None:
        raw = self._raw()
        seen = hashlib.sha256(raw).digest() if raw is not None else None
        if seen is not None and seen == self._seen:
            return
        entries = self._parse(raw).keys
        self._seen, self._entries, self._by_client = seen, entries, keys_by_client(entries)

    def _read(self) -> _File:
        return self._parse(self._raw())

    def _raw(self) -> bytes | None:
        """The file's bytes; None when there is no registry yet."""
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the client registry {self._path}: "
                              f"{exc.strerror}") from None

    def _parse(self, raw: bytes | None) -> _File:
        if raw is None:
            return _File()
        try:
            return _File.model_validate_json(raw)
        except ValidationError:
            raise ConfigError(f"the client registry {self._path} is damaged "
                              "(not the JSON infrabot writes)") from None

    def _write(self, current: _File) -> None:
        document = current.model_dump(mode="json")
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fp:
            fp.write(json.dumps(document, indent=2) + "\n")
        os.replace(tmp, self._path)


def open_registry(settings: Settings) -> ClientRegistry:
    """The client registry these settings name: a table ``client_keys`` in the authorization
    server's database (beside the audit trail) when ``INFRABOT_AUTH_DATABASE_URL`` is set, else
    in ``INFRABOT_DATABASE_URL``'s (beside the run log too: one host, or one trusted database);
    with neither, ``<state dir>/keys/client_registry.json``. An unreachable database is a
    :class:`~orchestrator.errors.ConfigError` (one line)."""
    if settings.auth_database_url is not None or settings.database_url is not None:
        return SqlClientRegistry(settings.registry_target)
    return StateDirRegistry(settings.keys_dir)
