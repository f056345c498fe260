"""Where the authorization server keeps the DPoP key each agent registered (``POST
/dpop_keys``), so that a hand-off to that agent can be bound to it.

:class:`RegistryKeyBook` keeps it in the client registry (the JSON file or the SQL table that
holds the clients' public keys), under the id ``dpop:<agent>``: it survives a restart of the
server and of the shared registry, and an operator sees it in ``infrabot keys list``. Such an id is
never a client of the directory, so a DPoP key never authenticates anyone. A new registration
replaces the agent's previous key. :class:`SharedKeyBook` keeps it in the shared registry for
``dpop_key_registration_seconds`` (what a server built without a client registry uses: tests, and
tools that issue tokens in process).
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.authserver._registry_api import ClientRegistry
from orchestrator.identity import PublicKey, RevocationStore, jkt_of

_PREFIX = "dpop:"


class DPoPKeyBook(Protocol):
    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        """Hold ``key`` as ``agent``'s DPoP key, in place of any before."""
        ...

    def registered(self, agent: str) -> str | None:
        """The thumbprint of ``agent``'s DPoP key, None if it registered none."""
        ...


class RegistryKeyBook:
    def __init__(self, registry: ClientRegistry) -> None:
        self._registry = registry

    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        holder = _PREFIX + agent
        self._registry.add(holder, [key], now=now)
        for kid in list(self._registry.keys_of(holder)):
            if kid != key.kid:
                self._registry.remove(holder, kid)

    def registered(self, agent: str) -> str | None:
        keys = self._registry.keys_of(_PREFIX + agent)
        return jkt_of(next(iter(keys.values()))) if len(keys) == 1 else None


class SharedKeyBook:
    def __init__(self, registry: RevocationStore, ttl: int) -> None:
        self._registry, self._ttl = registry, ttl

    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        self._registry.remember(_PREFIX + agent, jkt_of(key), ttl=self._ttl)

    def registered(self, agent: str) -> str | None:
        return self._registry.recall(_PREFIX + agent)
