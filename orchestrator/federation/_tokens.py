"""Verifying a user's identity-provider token where it enters: :class:`UserTokens`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.config import Settings
from orchestrator.federation._keys import ProviderKeys
from orchestrator.identity import (
    Directory,
    FederatedIdentity,
    IdentityProvider,
    KeySource,
    trusted_issuer,
    verify_federated,
)


@dataclass
class UserTokens:
    """The directory's trusted providers, their keys and this process's clock."""

    directory: Directory
    settings: Settings
    keys: Callable[[IdentityProvider], KeySource] = field(default_factory=ProviderKeys)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.providers = self.directory.providers_by_issuer()

    def verify(self, token: object) -> tuple[IdentityProvider, FederatedIdentity]:
        """The provider and the user ``token`` names, or :class:`InvalidToken` (or
        :class:`Unavailable` when the provider's keys cannot be fetched)."""
        return verify_federated(token, self.providers, self.keys, now=int(self.clock()),
                                leeway=self.settings.leeway_seconds,
                                max_bytes=self.settings.max_token_bytes)

    def is_trusted(self, token: object) -> bool:
        """Whether ``token`` says it comes from a trusted provider (unverified: a path, never
        an acceptance)."""
        return trusted_issuer(token, self.providers, max_bytes=self.settings.max_token_bytes)
