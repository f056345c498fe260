"""Where the authorization server keeps the DPoP keys each agent registered (``POST
/dpop_keys``), so that a hand-off to that agent can be bound to one.

:class:`RegistryKeyBook` keeps them in the client registry (the JSON file or the SQL table that
holds the clients' public keys), under the id ``dpop:<agent>``: they survive a restart of the
server and of the shared registry; an operator sees them in ``infrabot keys list`` and removes
one with ``infrabot keys revoke dpop:<agent> KID``, as a client key. Such an id is never a
client of the directory, so a DPoP key never authenticates anyone. An agent has one key per host
it runs on: registering adds a key. :class:`SharedKeyBook` keeps one key per agent, the latest
registered, in the shared registry for ``dpop_key_registration_seconds`` (what a server built
without a client registry uses: tests, and tools that issue tokens in process).
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.authserver._registry_api import ClientRegistry
from orchestrator.identity import PublicKey, RevocationStore, jkt_of

_PREFIX = "dpop:"


class DPoPKeyBook(Protocol):
    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        """Hold ``key`` as one of ``agent``'s DPoP keys."""
        ...

    def registered(self, agent: str) -> frozenset[str]:
        """The thumbprints of ``agent``'s DPoP keys (empty if it registered none)."""
        ...


class RegistryKeyBook:
    def __init__(self, registry: ClientRegistry) -> None:
        self._registry = registry

    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        self._registry.add(_PREFIX + agent, [key], now=now)

    def registered(self, agent: str) -> frozenset[str]:
        return frozenset(jkt_of(key) for key in self._registry.keys_of(_PREFIX + agent).values())


class SharedKeyBook:
    def __init__(self, registry: RevocationStore, ttl: int) -> None:
        self._registry, self._ttl = registry, ttl

    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        self._registry.remember(_PREFIX + agent, jkt_of(key), ttl=self._ttl)

    def registered(self, agent: str) -> frozenset[str]:
        jkt = self._registry.recall(_PREFIX + agent)
        return frozenset({jkt}) if jkt is not None else frozenset()
