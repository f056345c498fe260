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
from orchestrator.errors import Unavailable
from orchestrator.identity import CachedJWKS, KeySource, PublicKey

METADATA_PATH = "/.well-known/oauth-authorization-server"
FETCH_TIMEOUT_SECONDS = 2.0
_MAX_DOCUMENT_BYTES = 256 * 1024


def _unavailable(message: str) -> Unavailable:
    return Unavailable(message, reason="jwks_unavailable")


def _get_json(client: httpx.Client, url: str) -> dict[str, Any]:
    response = client.get(url, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise _unavailable(f"{url} answered {response.status_code}")
    if len(response.content) > _MAX_DOCUMENT_BYTES:
        raise _unavailable(f"{url} answered an oversized document")
    try:
        document = response.json()
    except ValueError as exc:
        raise _unavailable(f"{url} did not answer JSON") from exc
    if not isinstance(document, dict):
        raise _unavailable(f"{url} did not answer a JSON object")
    return document


def fetch_published_keys(auth_url: str, issuer: str, *, timeout: float = FETCH_TIMEOUT_SECONDS,
                         transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The JWKS document the authorization server at ``auth_url`` publishes for ``issuer``."""
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            metadata = _get_json(client, auth_url.rstrip("/") + METADATA_PATH)
            if metadata.get("issuer") != issuer:
                raise _unavailable("authorization server metadata names another issuer")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
                raise _unavailable("authorization server metadata has no usable jwks_uri")
            return _get_json(client, jwks_uri)
    except httpx.HTTPError as exc:
        raise _unavailable(f"authorization server unreachable: {type(exc).__name__}") from exc


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
