"""What every client registry back end shares: the interface (:class:`ClientRegistry`), one
registered key (:class:`RegisteredKey`), the "one key, one client" refusal (:class:`KeyInUse`)
and how stored entries become the public keys a lookup returns (:func:`keys_by_client`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import ConfigError
from orchestrator.identity import JWKSet, PublicKey

_ALL_ALGS = ("ES256", "RS256", "EdDSA")


class RegisteredKey(BaseModel):
    """One public key registered for a client, and when it was added (Unix seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    kid: str
    alg: str
    added_at: int
    jwk: dict[str, Any]

    @property
    def added(self) -> str:
        return datetime.fromtimestamp(self.added_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyInUse(ConfigError):
    """A key offered for one client is already registered for another."""

    reason = "key_registered_for_another_client"


class ClientRegistry(Protocol):
    """Public client keys by client id. Every change is visible to the next lookup."""

    def keys_of(self, client_id: str) -> Mapping[str, PublicKey]:
        """``client_id``'s registered keys by ``kid`` (empty for an unknown client)."""

    def entries(self) -> list[RegisteredKey]:
        """Every registered key, by client then time added."""

    def add(self, client_id: str, keys: Sequence[PublicKey], *, now: int) -> list[str]:
        """Register ``keys`` for ``client_id``; the kids that were new (a key registered again
        is left as it was). Refuses a key registered for another client (:class:`KeyInUse`)."""

    def remove(self, client_id: str, kid: str) -> bool:
        """Unregister one key; False if ``client_id`` had no key ``kid``."""

    def close(self) -> None:
        """Release what it holds open (a database's connections); idempotent."""


def keys_by_client(entries: Iterable[RegisteredKey]) -> dict[str, dict[str, PublicKey]]:
    """The public keys of ``entries`` by client and ``kid``; a damaged entry (a JWK that does not
    parse, or whose thumbprint is not its ``kid``) is never trusted, so it is left out."""
    by_client: dict[str, dict[str, PublicKey]] = {}
    for entry in entries:
        key = JWKSet.from_dict({"keys": [entry.jwk]}, _ALL_ALGS).get(entry.kid)
        if key is not None:
            by_client.setdefault(entry.client_id, {})[entry.kid] = key
    return by_client
