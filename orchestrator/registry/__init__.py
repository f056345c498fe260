"""Registry adapters at the edge: the revocation registry and replay cache on Redis, and the
choice of registry the settings name. The rules and the interface are in
:mod:`orchestrator.identity`; this package is where a client library is imported."""

from orchestrator.registry._redis import RedisRevocationStore, open_store

__all__ = ["RedisRevocationStore", "open_store"]
