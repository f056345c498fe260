"""Each trusted identity provider's published keys, fetched over HTTP and cached: the adapter
at the edge of the pure rules in :mod:`orchestrator.identity._federated`.

The key set's location comes from the directory only: the provider's ``jwks_url``, or the
``jwks_uri`` of its ``discovery_url`` document, whose ``issuer`` must be the provider's
(OpenID Connect Discovery 1.0 section 4.3). A set is kept ``refresh_seconds`` and fetched again
on an unknown ``kid`` at most once per ``min_refresh_seconds`` (:class:`CachedJWKS`), so a
stream of tokens with made-up ``kid`` values costs the provider one request per interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from orchestrator.federation._fetch import get_json, jwks_through_metadata, unavailable
from orchestrator.identity import CachedJWKS, IdentityProvider, KeySource, provider_key_set

FETCH_TIMEOUT_SECONDS = 2.0


def fetch_provider_keys(provider: IdentityProvider, *, timeout: float = FETCH_TIMEOUT_SECONDS,
                        transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The JWKS document ``provider`` publishes."""
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            if provider.jwks_url is not None:
                return get_json(client, provider.jwks_url)
            assert provider.discovery_url is not None  # the model requires one of the two
            return jwks_through_metadata(client, provider.discovery_url, provider.issuer,
                                         who="the identity provider's")
    except httpx.HTTPError as exc:
        raise unavailable(f"identity provider unreachable: {type(exc).__name__}") from exc


class ProviderKeys:
    """A cached key source per provider (by issuer), made on first use."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = FETCH_TIMEOUT_SECONDS,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._clock, self._timeout, self._transport = clock, timeout, transport
        self._sources: dict[str, CachedJWKS] = {}
        self._lock = threading.Lock()

    def __call__(self, provider: IdentityProvider) -> KeySource:
        with self._lock:
            source = self._sources.get(provider.issuer)
            if source is None:
                source = self._sources[provider.issuer] = CachedJWKS(
                    lambda: fetch_provider_keys(provider, timeout=self._timeout,
                                                transport=self._transport),
                    provider.algorithms, self._clock, provider.min_refresh_seconds,
                    max_age_seconds=provider.refresh_seconds, parse=provider_key_set)
            return source
