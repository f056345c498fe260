"""Where the authorization server keeps the DPoP keys each agent registered (``POST
/dpop_keys``), so that a hand-off to that agent can be bound to one.

:class:`RegistryKeyBook` keeps them in the client registry (the JSON file or the SQL table that
holds the clients' public keys), under the id ``dpop:<agent>``: they survive a restart of the
server and of the shared registry; an operator sees them in ``infrabot keys list`` and removes
one with ``infrabot keys revoke dpop:<agent> KID``, as a client key. Such an id is never a
client of the directory, so a DPoP key never authenticates anyone. An agent has one key per host
it runs on: registering adds a key, or renews it. A registration lapses ``ttl`` seconds after it
was made (the ``expires_in`` the server answers; agents renew theirs at half that), and an agent
holds at most :data:`MAX_KEYS_PER_AGENT`: registering one more drops its oldest. A key that is
another principal's (a client key, another agent's DPoP key) is refused ``dpop_key_in_use``, a
revoked one ``dpop_key_revoked`` (400 ``invalid_dpop_proof``); a registry that cannot be used is
503 ``client_registry_unavailable``. :class:`SharedKeyBook` keeps one key per agent, the latest
registered, in the shared registry for ``dpop_key_registration_seconds`` (what a server built
without a client registry uses: tests, and tools that issue tokens in process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from orchestrator.authserver._registry_api import (
    ClientRegistry,
    KeyInUse,
    KeyRevoked,
    keys_by_client,
)
from orchestrator.errors import ConfigError, InvalidDPoPProof, Unavailable
from orchestrator.identity import PublicKey, RevocationStore, jkt_of

_PREFIX = "dpop:"
# The DPoP keys one agent may hold at once: one per host (or per system sharing the registry,
# as `infrabot check --jobs 16` does) it runs on, with room to spare.
MAX_KEYS_PER_AGENT = 32


class DPoPKeyBook(Protocol):
    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        """Hold ``key`` as one of ``agent``'s DPoP keys."""
        ...

    def registered(self, agent: str) -> frozenset[str]:
        """The thumbprints of ``agent``'s DPoP keys (empty if it registered none)."""
        ...


class RegistryKeyBook:
    def __init__(self, registry: ClientRegistry, ttl: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry, self._ttl, self._clock = registry, ttl, clock

    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        try:
            self._registry.renew(_PREFIX + agent, key, now=now, keep=MAX_KEYS_PER_AGENT,
                                 since=now - self._ttl)
        except KeyInUse:
            raise InvalidDPoPProof("the proof's key is registered for another principal (a "
                                   "client key or another agent's DPoP key): a DPoP key must "
                                   "be a key of its own", reason="dpop_key_in_use") from None
        except KeyRevoked:
            raise InvalidDPoPProof("the proof's key was revoked and is never registered "
                                   "again: make a new DPoP key", reason="dpop_key_revoked"
                                   ) from None
        except ConfigError as exc:
            raise Unavailable(exc.message, reason="client_registry_unavailable") from None

    def registered(self, agent: str) -> frozenset[str]:
        since = int(self._clock()) - self._ttl
        try:
            entries = self._registry.entries(_PREFIX + agent)
        except ConfigError as exc:
            raise Unavailable(exc.message, reason="client_registry_unavailable") from None
        alive = keys_by_client(e for e in entries if e.added_at >= since)
        return frozenset(jkt_of(key) for key in alive.get(_PREFIX + agent, {}).values())


class SharedKeyBook:
    def __init__(self, registry: RevocationStore, ttl: int) -> None:
        self._registry, self._ttl = registry, ttl

    def register(self, agent: str, key: PublicKey, *, now: int) -> None:
        self._registry.remember(_PREFIX + agent, jkt_of(key), ttl=self._ttl)

    def registered(self, agent: str) -> frozenset[str]:
        jkt = self._registry.recall(_PREFIX + agent)
        return frozenset({jkt}) if jkt is not None else frozenset()
