"""The authorization server's decisions, independent of HTTP: one small dispatcher in front of
a module per RFC.

* :mod:`._token_exchange`: RFC 8693 token exchange, for agents;
* :mod:`._jwt_bearer`: the RFC 7523 JWT-bearer grant, through which the trusted orchestrator
  obtains the root token of a run;
* :mod:`._introspection`: RFC 7662 introspection (and a token's ``log_url``);
* :mod:`._revocation`: RFC 7009 revocation, plus revocation by user and by run.

Each request is read once, here at the edge, into a frozen typed request (:mod:`._forms`).
Every issuance and every refusal is audited (:mod:`._audit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.authserver import (
    _federated_root,
    _introspection,
    _jwt_bearer,
    _revocation,
    _token_exchange,
)
from orchestrator.authserver._audit import (
    DPOP_KEY_ACTION,
    INTROSPECT_ACTION,
    REVOKE_ACTION,
    Auditor,
    AuditSink,
)
from orchestrator.authserver._clients import ClientAuthenticator
from orchestrator.authserver._dpop import DPoPGate
from orchestrator.authserver._dpop_keys import DPoPKeyBook, SharedKeyBook
from orchestrator.authserver._forms import (
    ClientAuth,
    Form,
    RevokeByRequest,
    TokenRequest,
    TokenRequestOf,
)
from orchestrator.authserver._grants import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
    TokenResponse,
)
from orchestrator.config import Settings
from orchestrator.errors import OAuthError, Unavailable, UnsupportedGrantType
from orchestrator.federation import ProviderKeys, UserTokens
from orchestrator.identity import (
    AssertionPolicy,
    ClientKeyLookup,
    Context,
    Directory,
    Grant,
    IdentityProvider,
    Issuance,
    KeySource,
    NonceIssuer,
    PublicKey,
    RevocationStore,
    TokenVerifier,
    VerifierPolicy,
)
from orchestrator.keystore import KeyRing
from orchestrator.tracing import own_span, safe_text, tracing_on

__all__ = ["GRANT_JWT_BEARER", "GRANT_TOKEN_EXCHANGE", "TOKEN_TYPE_ACCESS", "TOKEN_TYPE_JWT",
           "AuditSink", "AuthorizationService", "TokenResponse"]


class _RingKeys:
    """The issuer's own published keys, reloaded when another process rotated them.

    Refreshed on every lookup (a ``stat`` unless something changed), so a key past its
    retirement stops verifying at once, not only after the next issuance reloads the ring.
    """

    def __init__(self, ring: KeyRing, clock: Callable[[], float]) -> None:
        self._ring, self._clock = ring, clock

    def get(self, kid: str) -> PublicKey | None:
        self._ring.refresh(now=int(self._clock()))
        return self._ring.jwks().get(kid)


@dataclass
class AuthorizationService:
    settings: Settings
    keyring: KeyRing
    directory: Directory
    revocation: RevocationStore
    client_keys: ClientKeyLookup
    services: dict[str, str]  # service name -> base URL
    audit: AuditSink | None = None
    clock: Callable[[], float] = time.time
    # Where agents' DPoP keys are kept (default: the shared registry, for a while).
    dpop_keys: DPoPKeyBook | None = None
    # Each trusted identity provider's published keys (by default fetched over HTTP and cached)
    provider_keys: Callable[[IdentityProvider], KeySource] | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.issuer = s.issuer_url
        self.token_endpoint = f"{s.auth_url}/token"
        self.verifier = TokenVerifier(_RingKeys(self.keyring, self.clock), VerifierPolicy(
            issuer=self.issuer, allowed_algs=s.allowed_algs, leeway=s.leeway_seconds,
            max_bytes=s.max_token_bytes, max_depth=s.max_depth))
        # RFC 7523 3: an aud that identifies this server: its issuer, its token endpoint, or
        # the endpoint the assertion is sent to (Authlib's PrivateKeyJWT() addresses it so).
        endpoints = (f"{s.auth_url}/{path}" for path in ("introspect", "revoke", "revocations"))
        self.assertion_policy = AssertionPolicy(
            audiences=frozenset({self.issuer, self.token_endpoint, s.auth_url, *endpoints}),
            allowed_algs=s.allowed_algs, leeway=s.leeway_seconds,
            max_lifetime=s.assertion_max_lifetime_seconds)
        self.clients = ClientAuthenticator(self.client_keys, self.directory, self.revocation,
                                           self.assertion_policy)
        self.audiences = frozenset({self.issuer, *(u.rstrip("/") for u in self.services.values())})
        self.auditor = Auditor(lambda: self.audit, self.clock)
        book = self.dpop_keys or SharedKeyBook(self.revocation, s.dpop_key_registration_seconds)
        self.dpop = DPoPGate(s, self.revocation, NonceIssuer(), book)
        self._issuances: dict[int, Issuance] = {}
        self.user_tokens = UserTokens(self.directory, s, keys=self.provider_keys or ProviderKeys(),
                                      clock=self.clock)

    def issuance(self, ttl: int) -> Issuance:
        """Where issued tokens point (built once per lifetime, not per request)."""
        issuance = self._issuances.get(ttl)
        if issuance is None:
            issuance = self._issuances[ttl] = Issuance(
                issuer=self.issuer, ttl=ttl, max_depth=self.settings.max_depth,
                services={url.rstrip("/"): name for name, url in self.services.items()},
                revocation_url=f"{self.settings.auth_url}/revoke",
                log_url=f"{self.settings.auth_url}/audit")
        return issuance

    def now(self) -> int:
        return int(self.clock())

    # -- the dispatcher -----------------------------------------------------------------------

    def token(self, form: Form, dpop: str | None = None) -> TokenResponse:
        """The token endpoint: the grant type, the DPoP proof if any (``dpop``: the header's
        value) and the client's assertion, then the grant's module. A refusal before the client
        is authenticated is audited as such."""
        request = TokenRequest.read(form)
        if not tracing_on():  # no span to describe the request on: nothing computed for one
            return self._token(request, dpop)
        with own_span("exchange", grant_type=_peek(lambda: request.grant_type.get()),
                      target=_peek(lambda: request.target),
                      scope_requested=_peek(lambda: request.scope.get())):
            return self._token(request, dpop)

    def _token(self, request: TokenRequest, dpop: str | None) -> TokenResponse:
        now = self.now()
        try:
            grant_type = request.grant_type.require()
            if grant_type not in (GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER):
                raise UnsupportedGrantType("grant_type is not supported")
            proof = self.dpop.proof(dpop, now=now)
            verified = self.clients.verified(request.client, now=now)
            # A subject token from a user's identity provider roots a run (docs/federation.md).
            federated = (grant_type == GRANT_TOKEN_EXCHANGE
                         and self.user_tokens.is_trusted(request.subject_token.get()))
            # An exchange claims the assertion in the round trip that checks its subject token.
            client = (self.clients.claim(verified)
                      if grant_type == GRANT_JWT_BEARER or federated else None)
        except (OAuthError, Unavailable) as exc:
            self.auditor.refused_request(exc, target=request.target)
            raise
        if client is None:
            return _token_exchange.exchange(self, verified, request, proof, now=now)
        if federated:
            return _federated_root.root_exchange(self, client, request, now=now)
        return _jwt_bearer.root_grant(self, client, request, now=now)

    def register_dpop_key(self, form: Form, dpop: str | None) -> dict[str, Any]:
        """``POST /dpop_keys``: an authenticated agent registers the DPoP key it proves. The
        registration is audited (the key's thumbprint), and so is a refusal: by the agent once
        it is authenticated."""
        now = self.now()
        client: str | None = None
        try:
            client = self.clients.authenticate(TokenRequestOf.read(form).client, now=now)
            proof = self.dpop.register(client, dpop, now=now)
        except (OAuthError, Unavailable) as exc:
            self.auditor.refused(DPOP_KEY_ACTION, client, "", exc, None)
            raise
        self.auditor.record(DPOP_KEY_ACTION, "allow", "ok", client, f"jkt:{proof.jkt}", None,
                            200)
        return {"client_id": client, "jkt": proof.jkt,
                "expires_in": self.settings.dpop_key_registration_seconds}

    def introspect(self, form: Form) -> dict[str, Any]:
        request = TokenRequestOf.read(form)
        client = self._authenticated(INTROSPECT_ACTION, request.client)
        return _introspection.introspect(self, client, request)

    def revoke(self, form: Form) -> None:
        request = TokenRequestOf.read(form)
        _revocation.revoke(self, self._authenticated(REVOKE_ACTION, request.client), request)

    def revoke_by(self, form: Form) -> dict[str, Any]:
        request = RevokeByRequest.read(form)
        client = self._authenticated(REVOKE_ACTION, request.client)
        return _revocation.revoke_by(self, client, request)

    def _authenticated(self, action: str, auth: ClientAuth) -> str:
        """The client ``auth`` authenticates; a refusal is audited as ``action``'s."""
        try:
            return self.clients.authenticate(auth, now=self.now())
        except (OAuthError, Unavailable) as exc:
            self.auditor.refused_request(exc, action=action)
            raise

    def audit_log(self, bearer: str | None, jti: str, *, scheme: str = "bearer",
                  proof: str | None = None) -> list[dict[str, Any]]:
        return _introspection.audit_log(self, bearer, jti, scheme=scheme, proof=proof)

    def audit_refused_form(self, action: str, exc: Exception) -> None:
        """Audit a request to a form endpoint refused before its body was read (``action``: the
        endpoint's, ``token``, ``dpop_key``, ``introspect`` or ``revoke``)."""
        self.auditor.refused_request(exc, action=action)

    # -- in process ---------------------------------------------------------------------------

    def issue_root(self, user: str, scopes: list[str], ctx: Context, first_agent: str,
                   client: str) -> TokenResponse:
        """The root token of a run issued in process (the CLI's stand-in for an IdP login)."""
        return _jwt_bearer.issue_root(self, user, scopes, ctx, first_agent, client)

    def root(self, user: str, scopes: list[str], ctx: Context, first_agent: str, client: str,
             *, now: int) -> Grant:
        return _jwt_bearer.root(self, user, scopes, ctx, first_agent, client, now=now)


def _peek(read: Callable[[], str | None]) -> str:
    """A request parameter for a span attribute: display-safe, never a token, and nothing for
    one the request got wrong (repeated: the token endpoint refuses and audits it)."""
    try:
        return safe_text(read())
    except OAuthError:
        return ""
