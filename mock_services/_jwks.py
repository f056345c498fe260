"""The authorization server's published keys, as every service fetches them.

RFC 8414 discovery: ``GET {auth_url}/.well-known/oauth-authorization-server``, check that the
metadata names the configured issuer, then ``GET`` its ``jwks_uri``. Any network failure,
non-200 answer or malformed document is :class:`~orchestrator.errors.Unavailable`
(``jwks_unavailable``): nothing is trusted then, and the request is refused with 503. Keys never
come from a token's header. :class:`~orchestrator.identity.CachedJWKS` caches the set and
refreshes it on an unknown ``kid`` at most once per ``min_refresh_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from orchestrator.config import Settings
from orchestrator.federation import jwks_through_metadata, unavailable
from orchestrator.identity import CachedJWKS, KeySource, PublicKey

METADATA_PATH = "/.well-known/oauth-authorization-server"
FETCH_TIMEOUT_SECONDS = 2.0


def fetch_published_keys(auth_url: str, issuer: str, *, timeout: float = FETCH_TIMEOUT_SECONDS,
                         transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The JWKS document the authorization server at ``auth_url`` publishes for ``issuer``."""
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            return jwks_through_metadata(client, auth_url.rstrip("/") + METADATA_PATH, issuer,
                                         who="authorization server")
    except httpx.HTTPError as exc:
        raise unavailable(f"authorization server unreachable: {type(exc).__name__}") from exc


def remote_key_source(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    min_refresh_seconds: float = 5.0,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> CachedJWKS:
    """A cached key source over the keys published by the authorization server ``settings``
    name, accepting only ``settings.allowed_algs``."""

    def fetch() -> dict[str, Any]:
        return fetch_published_keys(settings.auth_url, settings.issuer_url, timeout=timeout,
                                    transport=transport)

    return CachedJWKS(fetch, settings.allowed_algs, clock, min_refresh_seconds)


class SerialKeySource:
    """Serialises lookups on a key source shared by request threads, so that a flood of unknown
    ``kid`` values cannot race past the refresh rate limit of a cache that is not thread-safe."""

    def __init__(self, keys: KeySource) -> None:
        self._keys = keys
        self._lock = threading.Lock()

    def get(self, kid: str) -> PublicKey | None:
        with self._lock:
            return self._keys.get(kid)
