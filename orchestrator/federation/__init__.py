"""Federated roots: a user's own identity-provider token starts a chain (docs/federation.md).

The rules are pure, in :mod:`orchestrator.identity` (``verify_federated``,
``federated_holder``); this package is their I/O: the providers' published keys over HTTP
(:class:`ProviderKeys`) and :class:`UserTokens`, which verifies a token at the edge.
"""

from orchestrator.federation._fetch import get_json, jwks_through_metadata, unavailable
from orchestrator.federation._keys import ProviderKeys, fetch_provider_keys
from orchestrator.federation._tokens import UserTokens

__all__ = ["ProviderKeys", "UserTokens", "fetch_provider_keys", "get_json", "jwks_through_metadata",
           "unavailable"]
