"""Who may call a route: token verification, revocation and authorization, without HTTP.

:meth:`AccessChecker.verify` runs the shared :class:`~orchestrator.identity.TokenVerifier`
(signature against published keys, ``typ``, algorithm allow-list, exact issuer, this service's
audience, expiry with leeway, required claims, chain shape and depth). :meth:`AccessChecker.admit`
then asks the revocation registry (epoch, token, ancestors, run, user; cascade included) and
authorizes the route's scope for the principal (``sub``) and the current actor with the pure
decision of the identity core (:func:`~orchestrator.identity.admit_scope`: ``insufficient_scope``,
``context_forbidden``, ``actor_not_allowed``, ``user_lacks_permission``).

:meth:`AccessChecker.check_targets` then checks the resources the request names against the
token's ``ctx`` (:meth:`~orchestrator.identity.Directory.target_refusal`): environment, repository
and service must be the token's (``environment_mismatch``, ``repository_mismatch``,
``service_mismatch``) and the context rules hold in the target's environment
(``context_forbidden``).

:meth:`AccessChecker.verify_and_admit` (what a service runs for each request) does both with the
registry's query sent before the signature check and read after it, so the round trip overlaps
the check (:meth:`~orchestrator.identity.RevocationStore.begin`).

All of these calls block (keys may be fetched, the registry may be Redis): callers run them off
the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Iterable

from mock_services._chain import ChainCheck
from mock_services._jwks import SerialKeySource
from mock_services._sender import BEARER_ONLY, Presented, SenderCheck
from mock_services._targets import TargetRefused
from orchestrator.config import Settings
from orchestrator.errors import InvalidToken, OAuthError, PredatesMemory, Unavailable
from orchestrator.identity import (
    AccessClaims,
    Caller,
    Directory,
    KeySource,
    ResourceAttributes,
    RevocationStore,
    TokenVerifier,
    VerifierPolicy,
    admit_scope,
    peek_target,
)

STATIC_ACTOR = "service-account:infrabot"


def _first(claim: Callable[[], bool]) -> bool:
    """Whether a one-time claim was made now (one that predates the registry's memory was
    not: whether it was used before cannot be told)."""
    try:
        return claim()
    except PredatesMemory:
        return False


class AccessChecker:
    def __init__(self, *, audience: str, settings: Settings, keys: KeySource,
                 revocation: RevocationStore, directory: Directory,
                 clock: Callable[[], float], service: str | None = None,
                 client_keys: KeySource | None = None) -> None:
        policy = VerifierPolicy(
            issuer=settings.issuer_url,
            allowed_algs=tuple(settings.allowed_algs),
            leeway=settings.leeway_seconds,
            max_bytes=settings.max_token_bytes,
            max_depth=settings.max_depth,
        )
        server_keys = SerialKeySource(keys)
        self._verifier = TokenVerifier(server_keys, policy)
        self._audience = audience
        self._revocation = revocation
        self._directory = directory
        self._clock = clock
        self._stale = settings.revocation_stale_seconds
        self._max_bytes = settings.max_token_bytes
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()
        self.sender = SenderCheck(settings, directory, service)
        self.chain = ChainCheck(settings, directory, service, server_keys, client_keys)
        static = settings.static_token
        self._static = (hashlib.sha256(static.get_secret_value().encode()).digest()
                        if static is not None else None)

    def static_caller(self, token: str) -> Caller | None:
        """The static-token baseline: the one service token, if configured and presented.

        It stands for an over-permissioned service account: no user, no chain, every scope.
        Compared in constant time on digests; off unless ``settings.static_token`` is set.
        """
        if self._static is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        if not hmac.compare_digest(digest, self._static):
            return None
        return Caller(principal="", actor=STATIC_ACTOR, chain=(), scopes=("*",), context={},
                      jti="", run_id="")

    @property
    def audience(self) -> str:
        return self._audience

    def verify(self, token: str) -> AccessClaims:
        """Verified claims, or :class:`InvalidToken` with the verifier's reason."""
        try:
            verified = self._verifier.verify(token, audience=self._audience,
                                             now=int(self._clock()))
        except InvalidToken:
            raise
        except OAuthError as exc:  # e.g. a malformed scope string inside a signed token
            raise InvalidToken("token claims are invalid", reason="invalid_claims") from exc
        return verified.claims

    def verify_and_admit(self, token: str, scope: str, *,
                         verified: Callable[[AccessClaims], object] | None = None,
                         presented: Presented = BEARER_ONLY) -> Caller:
        """:meth:`verify`, the sender check (:mod:`mock_services._sender`: how the token is
        ``presented``, its DPoP proof), then :meth:`admit`, with the registry asked while the
        signature is checked: the query (and the proof's one-time claim) names what the token's
        payload says, and its answer is applied only to verified claims naming the same things
        (:meth:`RevocationStore.begin`). ``verified`` sees the claims before admission decides
        (for the audit record of a refusal)."""
        try:
            proof = self.sender.proof(presented, token, now=int(self._clock()))
        except OAuthError:
            self._verified(token, verified)  # a bad token is refused as that, first
            raise
        claim = (proof.replay_key, self.sender.policy.replay_ttl()) if proof else None
        issued_at = proof.iat if proof else None
        overlap = self._revocation.remote and not self._stale
        target = peek_target(token, max_bytes=self._max_bytes) if overlap else None
        if target is None:
            claims = self._verified(token, verified)
            first = True
            if claim is not None:
                key, ttl = claim
                first = _first(lambda: self._revocation.claim_once(key, ttl=ttl,
                                                                   issued_at=issued_at))
            self.sender.check(claims, presented, proof, first_use=first)
            return self.admit(claims, scope)
        try:
            registry = self._revocation.begin(target, claim=claim, issued_at=issued_at)
        except Unavailable:
            self._verified(token, verified)  # a bad token is refused as that, first
            raise
        with registry:
            claims = self._verified(token, verified)
            self.sender.check(claims, presented, proof, first_use=_first(registry.claimed))
            registry.check(claims)
        return self._authorize(claims, scope)

    def _verified(self, token: str,
                  verified: Callable[[AccessClaims], object] | None) -> AccessClaims:
        claims = self.verify(token)
        if verified is not None:
            verified(claims)
        return claims

    def admit(self, claims: AccessClaims, scope: str) -> Caller:
        """Check revocation, then authorize ``scope``; raises the refusal."""
        self._check_revocation(claims)
        return self._authorize(claims, scope)

    def check_targets(self, claims: AccessClaims, scope: str,
                      targets: Iterable[ResourceAttributes]) -> None:
        """Refuse (:class:`TargetRefused`) unless the token's context owns every target."""
        for target in targets:
            refusal = self._directory.target_refusal(scope, claims.ctx, target)
            if refusal is not None:
                raise TargetRefused(target, refusal)

    def _authorize(self, claims: AccessClaims, scope: str) -> Caller:
        self.chain.check(claims)
        return admit_scope(self._directory, claims, scope)

    def _check_revocation(self, claims: AccessClaims) -> None:
        """Ask the registry; with ``revocation_stale_seconds`` > 0 a 'not revoked' answer is
        reused for that long (default 0: every request asks)."""
        now = self._clock()
        if self._stale:
            with self._lock:
                if now - self._checked.get(claims.jti, float("-inf")) < self._stale:
                    return
        self._revocation.check(claims)
        if self._stale:
            with self._lock:
                if len(self._checked) > 10_000:
                    self._checked.clear()
                self._checked[claims.jti] = now
