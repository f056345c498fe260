"""What every grant and endpoint module reads of the authorization server: its settings, keys,
directory, registries, verifiers and auditor (:class:`Server`, which
:class:`~orchestrator.authserver._service.AuthorizationService` is)."""

from __future__ import annotations

from typing import Protocol

from orchestrator.authserver._audit import Auditor, AuditSink
from orchestrator.authserver._clients import ClientAuthenticator
from orchestrator.authserver._dpop import DPoPGate
from orchestrator.config import Settings
from orchestrator.federation import UserTokens
from orchestrator.identity import (
    AssertionPolicy,
    ClientKeyLookup,
    Directory,
    Issuance,
    RevocationStore,
    TokenVerifier,
)
from orchestrator.keystore import KeyRing


class Server(Protocol):
    """Read-only to the modules: they decide, the service holds."""

    @property
    def settings(self) -> Settings: ...

    @property
    def keyring(self) -> KeyRing: ...

    @property
    def directory(self) -> Directory: ...

    @property
    def revocation(self) -> RevocationStore: ...

    @property
    def client_keys(self) -> ClientKeyLookup: ...

    @property
    def audit(self) -> AuditSink | None: ...

    @property
    def issuer(self) -> str: ...

    @property
    def verifier(self) -> TokenVerifier: ...

    @property
    def assertion_policy(self) -> AssertionPolicy: ...

    @property
    def clients(self) -> ClientAuthenticator: ...

    @property
    def audiences(self) -> frozenset[str]: ...

    @property
    def auditor(self) -> Auditor: ...

    @property
    def dpop(self) -> DPoPGate: ...

    @property
    def user_tokens(self) -> UserTokens: ...

    def now(self) -> int: ...

    def issuance(self, ttl: int) -> Issuance:
        """Where issued tokens of this lifetime point."""
        ...
