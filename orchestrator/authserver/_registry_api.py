"""What every client registry back end shares: the interface (:class:`ClientRegistry`), one
registered key (:class:`RegisteredKey`) and one revoked key (:class:`RevokedKey`), the "one key,
one client" refusal (:class:`KeyInUse`) and the "a revoked key never comes back" one
(:class:`KeyRevoked`), which of a client's keys a renewal drops (:func:`dropped_by_renewal`),
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


class RevokedKey(BaseModel):
    """A key removed by ``infrabot keys revoke``: its thumbprint is remembered, so it is never
    registered again, for this client or any other."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    kid: str
    revoked_at: int

    @property
    def revoked(self) -> str:
        return datetime.fromtimestamp(self.revoked_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyInUse(ConfigError):
    """A key offered for one client is already registered for another."""

    reason = "key_registered_for_another_client"


def key_in_use(kid: str, owner: str) -> KeyInUse:
    return KeyInUse(f"key {kid} is already registered for {owner}; "
                    "each client needs a key of its own")


class KeyRevoked(ConfigError):
    """A key offered for registration was revoked (``infrabot keys revoke``)."""

    reason = "key_revoked"


def key_revoked(kid: str, owner: str) -> KeyRevoked:
    return KeyRevoked(f"key {kid} was revoked (for {owner}) and is never registered again; "
                      "make a new key")


def dropped_by_renewal(entries: Iterable[RegisteredKey], kid: str, *, keep: int,
                       since: int) -> set[str]:
    """The kids a renewal of ``kid`` drops among one client's other ``entries``: those added
    before ``since`` (lapsed), and all but the ``keep - 1`` newest of the rest."""
    others = sorted((e for e in entries if e.kid != kid), key=lambda e: (e.added_at, e.kid))
    lapsed = {e.kid for e in others if e.added_at < since}
    alive = [e.kid for e in others if e.kid not in lapsed]
    return lapsed | set(alive[:max(0, len(alive) - (keep - 1))])


class ClientRegistry(Protocol):
    """Public client keys by client id. Every change is visible to the next lookup."""

    def keys_of(self, client_id: str) -> Mapping[str, PublicKey]:
        """``client_id``'s registered keys by ``kid`` (empty for an unknown client)."""

    def entries(self, client_id: str | None = None) -> list[RegisteredKey]:
        """Every registered key (or ``client_id``'s), by client then time added."""

    def revoked(self) -> list[RevokedKey]:
        """Every key revoked by :meth:`revoke`, by client then time revoked."""

    def add(self, client_id: str, keys: Sequence[PublicKey], *, now: int) -> list[str]:
        """Register ``keys`` for ``client_id``; the kids that were new (a key registered again
        is left as it was). Refuses a key registered for another client (:class:`KeyInUse`)
        and a revoked one (:class:`KeyRevoked`): all or nothing."""

    def renew(self, client_id: str, key: PublicKey, *, now: int, keep: int,
              since: int) -> None:
        """Register ``key`` for ``client_id`` as added ``now`` (added, or its time moved), and
        unregister ``client_id``'s other keys added before ``since`` and all but its ``keep``
        newest (an agent's DPoP keys). Refuses as :meth:`add` does."""

    def remove(self, client_id: str, kid: str) -> bool:
        """Unregister one key; False if ``client_id`` had no key ``kid``. It may be registered
        again (a renewal's dropped key is)."""

    def revoke(self, client_id: str, kid: str, *, now: int, unregistered: bool = False) -> bool:
        """Unregister one key for good: it is remembered as revoked and never registered again
        (:class:`KeyRevoked`). False if ``client_id`` had no key ``kid``; with ``unregistered``,
        a ``kid`` no client holds and none revoked is remembered as revoked too (an agent's DPoP
        key that lapsed or was dropped: its thumbprint is all there is to revoke)."""

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
