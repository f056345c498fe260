"""Client authentication at the authorization server: ``private_key_jwt`` (RFC 7523 section 2.2).

A client's public keys are those registered for it in the client registry
(:mod:`orchestrator.authserver._registry`), one chosen by the assertion's ``kid``; the client
must also be in the directory (an agent or a listed client). A reused assertion ``jti`` is
refused, and so is one issued before the replay registry's memory began (an unpersisted Redis
restarted since): it could have been used already without the registry remembering it.

Authentication is two steps: :meth:`ClientAuthenticator.verified` checks the assertion, and the
client is authenticated once its one-time key is claimed in the replay registry. Most endpoints
take both at once (:meth:`~ClientAuthenticator.authenticate`); the token exchange claims the key
in the same registry round trip as its subject token's revocation check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.authserver._forms import ClientAuth
from orchestrator.authserver._registry import ClientRegistry
from orchestrator.errors import ConfigError, InvalidClient, PredatesMemory, Unavailable
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    AssertionPolicy,
    Directory,
    PublicKey,
    RevocationStore,
    verify_assertion,
)


class ClientKeys:
    """The public keys a client is known by, from the client registry only, keeping only the
    algorithms this server allows. The client id (an assertion's claimed ``iss``) is a lookup
    key, never part of a path; nothing is remembered per claimed id. A registry that cannot be
    read fails closed (503)."""

    def __init__(self, registry: ClientRegistry, allowed_algs: tuple[str, ...]) -> None:
        self._registry = registry
        self._algs = allowed_algs

    def __call__(self, client_id: str) -> Mapping[str, PublicKey]:
        try:
            keys = self._registry.keys_of(client_id)
        except ConfigError as exc:
            raise Unavailable(exc.message, reason="client_registry_unavailable") from None
        return {kid: key for kid, key in keys.items() if key.alg in self._algs}


@dataclass(frozen=True)
class VerifiedClient:
    """A client whose assertion verified; it is authenticated once ``replay_key`` is claimed
    (for ``replay_ttl`` seconds, as issued at ``issued_at``)."""

    client_id: str
    replay_key: str
    replay_ttl: int
    issued_at: int


def assertion_replayed() -> InvalidClient:
    return InvalidClient("client assertion was already used", reason="assertion_replayed")


def assertion_predates_registry() -> InvalidClient:
    return InvalidClient("client assertion was issued before the replay registry's memory began "
                         "(it restarted), so whether it was used cannot be told; sign a new one",
                         reason="assertion_predates_registry")


class ClientAuthenticator:
    def __init__(self, keys: Callable[[str], Mapping[str, PublicKey]], directory: Directory,
                 replay: RevocationStore, policy: AssertionPolicy) -> None:
        self._keys = keys
        self._directory = directory
        self._replay = replay
        self._policy = policy

    def authenticate(self, auth: ClientAuth, *, now: int) -> str:
        """The authenticated client id, or :class:`InvalidClient`."""
        return self.claim(self.verified(auth, now=now))

    def claim(self, client: VerifiedClient) -> str:
        """Claim the assertion's one-time key: the client id, or :class:`InvalidClient` if the
        assertion was used before or predates the registry's memory."""
        try:
            claimed = self._replay.claim_once(client.replay_key, ttl=client.replay_ttl,
                                              issued_at=client.issued_at)
        except PredatesMemory:
            raise assertion_predates_registry() from None
        if not claimed:
            raise assertion_replayed()
        return client.client_id

    def verified(self, auth: ClientAuth, *, now: int) -> VerifiedClient:
        """The client whose assertion ``auth`` carries, checked but not yet claimed; or
        :class:`InvalidClient`."""
        assertion_type = auth.assertion_type.get()
        if assertion_type is None:
            raise InvalidClient("client authentication (private_key_jwt) is required",
                                reason="client_authentication_missing")
        if assertion_type != CLIENT_ASSERTION_TYPE:
            raise InvalidClient("unsupported client_assertion_type",
                                reason="unsupported_client_assertion_type")
        claimed = auth.client_id.get()
        claims = verify_assertion(auth.assertion.require(), keys=self._keys,
                                  policy=self._policy, now=now, expected_issuer=claimed)
        client = claims["iss"]
        if claims["sub"] != client:
            raise InvalidClient("assertion sub must equal iss", reason="client_mismatch")
        if client not in self._directory.client_ids():
            raise InvalidClient("client is not registered in the directory",
                                reason="unknown_client")
        return VerifiedClient(str(client), f"assertion:{client}:{claims['jti']}",
                              self._policy.replay_ttl(claims, now=now),
                              self._policy.issued_at(claims))
