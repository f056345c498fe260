"""The authorization server's decisions, independent of HTTP.

Grants: RFC 8693 token exchange for agents, and the RFC 7523 JWT-bearer grant through which the
trusted orchestrator obtains the root token of a run. Also RFC 7662 introspection and RFC 7009
revocation (plus revocation by user and by run). Every issuance and every refusal is audited.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.audit import AuditRecord, contains_raw_jwt
from orchestrator.authserver._clients import (
    ClientAuthenticator,
    VerifiedClient,
    assertion_predates_registry,
    assertion_replayed,
)
from orchestrator.authserver._forms import Form, required, single
from orchestrator.config import Settings
from orchestrator.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    PredatesMemory,
    UnauthorizedClient,
    Unavailable,
    UnsupportedGrantType,
    UnsupportedTokenType,
)
from orchestrator.identity import (
    AccessClaims,
    AssertionPolicy,
    ClientKeyLookup,
    Context,
    Directory,
    ExchangeRequest,
    Grant,
    Issuance,
    KeyRing,
    PendingCheck,
    PublicKey,
    RevocationStore,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    decide,
    decide_root,
    mint,
    parse_scopes,
    peek_target,
    verify_assertion,
)

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
_SUBJECT_TYPES = frozenset({TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT})


class AuditSink(Protocol):
    def append(self, record: AuditRecord) -> object: ...
    def query(self, *, run_id: str | None = None) -> list[Any]: ...


@dataclass(frozen=True)
class TokenResponse:
    """An RFC 8693 section 2.2.1 response; ``claims`` and ``dropped`` stay server-side."""

    access_token: str
    expires_in: int
    scope: str
    claims: AccessClaims
    dropped: tuple[str, ...] = ()
    issued_token_type: str = TOKEN_TYPE_ACCESS
    token_type: str = "Bearer"

    def body(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "issued_token_type": self.issued_token_type,
                "token_type": self.token_type, "expires_in": self.expires_in, "scope": self.scope}


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

    def __post_init__(self) -> None:
        s = self.settings
        self.issuer = s.issuer_url
        self.token_endpoint = f"{s.auth_url}/token"
        self.verifier = TokenVerifier(_RingKeys(self.keyring, self.clock), VerifierPolicy(
            issuer=self.issuer, allowed_algs=s.allowed_algs, leeway=s.leeway_seconds,
            max_bytes=s.max_token_bytes, max_depth=s.max_depth))
        self.assertion_policy = AssertionPolicy(
            audiences=frozenset({self.issuer, self.token_endpoint, s.auth_url}),
            allowed_algs=s.allowed_algs, leeway=s.leeway_seconds,
            max_lifetime=s.assertion_max_lifetime_seconds)
        self.clients = ClientAuthenticator(self.client_keys, self.directory, self.revocation,
                                           self.assertion_policy)
        self.audiences = frozenset({self.issuer, *(u.rstrip("/") for u in self.services.values())})
        self._issuances: dict[int, Issuance] = {}

    def _issuance(self, ttl: int) -> Issuance:
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

    # -- token endpoint ---------------------------------------------------------------------

    def token(self, form: Form) -> TokenResponse:
        now = self.now()
        target = _peek(form, "resource") or _peek(form, "audience")
        try:
            grant_type = single(form, "grant_type", required=True)
            if grant_type not in (GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER):
                raise UnsupportedGrantType("grant_type is not supported")
            verified = self.clients.verified(form, now=now)
            # An exchange claims the assertion in the round trip that checks its subject token.
            client = self.clients.claim(verified) if grant_type == GRANT_JWT_BEARER else None
        except (OAuthError, Unavailable) as exc:
            self.audit_refused_request(exc, target=target)
            raise
        if client is None:
            return self.exchange(verified, form, now=now)
        return self.root_grant(client, form, now=now)

    def exchange(self, verified: VerifiedClient, form: Form, *, now: int) -> TokenResponse:
        """RFC 8693 for a client whose assertion verified; its one-time key is claimed in the
        registry round trip that checks the subject token. Until that claim is made the client
        is not authenticated, and a refusal then (a replayed assertion, an unreachable
        registry) is audited as an unauthenticated request, as :meth:`token` audits one."""
        subject: VerifiedToken | None = None
        client = verified.client_id
        target = _peek(form, "resource") or _peek(form, "audience")
        try:
            with self._claim_and_check(verified, form) as registry:
                try:
                    subject = self._subject(form, now=now)
                except (OAuthError, Unavailable):
                    _require_claimed(registry)  # a replayed assertion is refused as that, first
                    raise
                _require_claimed(registry)
                self._check_standing(registry, subject, now=now)
            self._check_actor_token(client, form, now=now)
            requested_type = single(form, "requested_token_type")
            if requested_type is not None and requested_type not in _SUBJECT_TYPES:
                raise InvalidRequest("requested_token_type is not supported",
                                     reason="unsupported_requested_token_type")
            scope = single(form, "scope")
            grant = decide(ExchangeRequest(
                subject=subject, actor=client, scopes=parse_scopes(scope) if scope else None,
                resource=single(form, "resource"), audience=single(form, "audience")),
                self.directory, self._issuance(self.settings.token_ttl_seconds), now=now)
        except _Unauthenticated as unauthenticated:
            self.audit_refused_request(unauthenticated.error, target=target)
            raise unauthenticated.error from unauthenticated.error.__cause__
        except (OAuthError, Unavailable) as exc:
            self._audit_refusal("token_exchange", client, target, exc,
                                subject.claims if subject else None)
            raise
        return self._issue(grant, "token_exchange", target, now=now)

    def _claim_and_check(self, client: VerifiedClient, form: Form) -> PendingCheck:
        """The client's one-time claim and the subject token's revocation check, sent in one
        registry round trip before the subject token is verified (the check names what its
        payload says; see :meth:`RevocationStore.begin`)."""
        target = (peek_target(_peek(form, "subject_token"),
                              max_bytes=self.verifier.policy.max_bytes)
                  if self.revocation.remote else None)  # in process: checked when verified
        try:
            return self.revocation.begin(target, claim=(client.replay_key, client.replay_ttl),
                                         issued_at=client.issued_at)
        except Unavailable as exc:
            raise _Unauthenticated(exc) from exc

    @staticmethod
    def _check_standing(registry: PendingCheck, subject: VerifiedToken, *, now: int) -> None:
        """Not revoked (registry epoch, token, ancestors, run, user) and not at its end. Checked
        after the subject is verified, so a refusal is audited with the chain it refused."""
        try:
            registry.check(subject.claims)
        except InvalidToken as exc:
            raise InvalidRequest(f"subject_token: {exc.message}", reason=exc.reason) from exc
        if subject.claims.exp <= now:  # inside the verifier's leeway, but nothing left to give
            raise InvalidRequest("subject_token: token has expired", reason="token_expired")

    def _subject(self, form: Form, *, now: int) -> VerifiedToken:
        """The verified subject token. RFC 8693 2.2.2: an invalid one is ``invalid_request``."""
        token = required(form, "subject_token")
        if required(form, "subject_token_type") not in _SUBJECT_TYPES:
            raise InvalidRequest("subject_token_type is not supported",
                                 reason="unsupported_subject_token_type")
        try:
            return self.verifier.verify(token, audience=self.issuer, now=now)
        except InvalidToken as exc:
            raise InvalidRequest(f"subject_token: {exc.message}", reason=exc.reason) from exc

    def _check_actor_token(self, client: str, form: Form, *, now: int) -> None:
        """An ``actor_token``, if given, must be a JWT the caller itself signed, naming itself."""
        actor_token = single(form, "actor_token")
        if actor_token is None:
            if single(form, "actor_token_type") is not None:
                raise InvalidRequest("actor_token_type without actor_token",
                                     reason="missing_parameter")
            return
        if single(form, "actor_token_type") != TOKEN_TYPE_JWT:
            raise InvalidRequest("actor_token_type must be the JWT token type",
                                 reason="unsupported_actor_token_type")
        try:
            claims = verify_assertion(actor_token, keys=self.client_keys,
                                      policy=self.assertion_policy, now=now,
                                      error=InvalidRequest)
        except InvalidRequest as exc:
            raise InvalidRequest(f"actor_token: {exc.message}", reason="invalid_actor_token") \
                from exc
        if claims["iss"] != client or claims["sub"] != client:
            raise InvalidRequest("actor_token names an actor other than the authenticated client",
                                 reason="actor_mismatch")

    def root_grant(self, client: str, form: Form, *, now: int) -> TokenResponse:
        """RFC 7523 grant: the trusted orchestrator roots a run in a user and an event."""
        user, target = "", _peek(form, "audience")
        try:
            if not self.directory.clients.get(client, None) or \
                    not self.directory.clients[client].trusted:
                raise UnauthorizedClient("only a trusted client may obtain root user tokens",
                                         reason="client_not_trusted")
            claims = verify_assertion(required(form, "assertion"), keys=self.client_keys,
                                      policy=self.assertion_policy, now=now, error=InvalidGrant,
                                      expected_issuer=client)
            issued = self.assertion_policy.issued_at(claims)
            try:
                first = self.revocation.claim_once(f"grant:{client}:{claims['jti']}", ttl=900,
                                                   issued_at=issued)
            except PredatesMemory:
                raise InvalidGrant("grant assertion was issued before the replay registry's "
                                   "memory began (it restarted), so whether it was used cannot "
                                   "be told", reason="assertion_predates_registry") from None
            if not first:
                raise InvalidGrant("grant assertion was already used", reason="assertion_replayed")
            user = str(claims["sub"])
            ctx = _context(claims.get("ctx"))
            scope = required(form, "scope")
            first_agent = required(form, "audience")
            grant = self.root(user, sorted(parse_scopes(scope)), ctx, first_agent, client, now=now)
        except (OAuthError, Unavailable) as exc:
            self._audit_refusal("root_grant", client, target, exc, None, user=user or None)
            raise
        return self._issue(grant, "root_grant", target, now=now)

    def issue_root(self, user: str, scopes: list[str], ctx: Context, first_agent: str,
                   client: str) -> TokenResponse:
        """The root token of a run issued in process (the CLI's stand-in for an IdP login)."""
        now = self.now()
        try:
            grant = self.root(user, scopes, ctx, first_agent, client, now=now)
        except (OAuthError, Unavailable) as exc:
            self._audit_refusal("root_grant", client, first_agent, exc, None, user=user)
            raise
        return self._issue(grant, "root_grant", first_agent, now=now)

    def root(self, user: str, scopes: list[str], ctx: Context, first_agent: str, client: str,
             *, now: int) -> Grant:
        standing = self.revocation.standing(user)
        return decide_root(user, scopes, ctx, first_agent, self.directory,
                           self._issuance(self.settings.root_token_ttl_seconds), client=client,
                           user_version=standing.user_version,
                           registry_epoch=standing.registry_epoch, now=now)

    def _issue(self, grant: Grant, action: str, target: str, *, now: int) -> TokenResponse:
        self.keyring.refresh(now=now)
        token = mint(grant.claims, self.keyring.current)
        c = grant.claims
        self._audit(action, "allow", "ok", c.client_id, target, c, 200)
        return TokenResponse(access_token=token, expires_in=c.exp - now, scope=c.scope,
                             claims=c, dropped=grant.dropped)

    # -- introspection and revocation ---------------------------------------------------------

    def introspect(self, form: Form) -> dict[str, Any]:
        """RFC 7662: the full chain and context of a valid token, else ``{"active": false}``."""
        now = self.now()
        client = self.clients.authenticate(form, now=now)
        token = required(form, "token")
        try:
            verified = self.verifier.verify(token, audience=self.audiences, now=now)
            self.revocation.check(verified.claims)
        except InvalidToken as exc:
            self._audit("introspect", "deny", exc.reason, client, "token", None, 200)
            return {"active": False}
        c = verified.claims
        self._audit("introspect", "allow", "ok", client, "token", c, 200)
        return {"active": True, **c.public_view(), "token_type": "Bearer",
                "username": c.sub, "chain": c.chain(), "current_actor": c.current_actor}

    def revoke(self, form: Form) -> None:
        """RFC 7009: revoke a token (and so every token exchanged from it)."""
        now = self.now()
        client = self.clients.authenticate(form, now=now)
        token = required(form, "token")
        hint = single(form, "token_type_hint")
        if hint is not None and hint not in ("access_token", "refresh_token"):
            raise UnsupportedTokenType("token_type_hint is not supported")
        try:
            claims = self.verifier.verify(token, audience=self.audiences, now=now).claims
        except InvalidToken:
            return  # RFC 7009 2.2: an invalid token is answered 200 and nothing happens
        if not self._may_revoke(client, claims):
            raise UnauthorizedClient("client may not revoke this token", reason="not_token_holder")
        self.revocation.revoke_jti(claims.jti, expires_at=claims.exp)
        self._audit("revoke", "allow", "token_revoked", client, f"jti:{claims.jti}", claims, 200)

    def audit_log(self, bearer: str | None, jti: str) -> list[dict[str, Any]]:
        """The ``log_url`` of a token: the audit records of ``jti``, shown to a holder of that
        token or of any token exchanged from it (a valid, unrevoked bearer naming it)."""
        if not bearer:
            raise InvalidToken("a bearer token is required", reason="missing_token")
        claims = self.verifier.verify(bearer, audience=self.audiences, now=self.now()).claims
        self.revocation.check(claims)
        if jti != claims.jti and jti not in claims.ancestors:
            raise InsufficientScope("the bearer token is not this token or its descendant",
                                    reason="not_in_chain")
        if self.audit is None:
            return []
        return [r.to_json() for r in self.audit.query(run_id=claims.ctx.run_id) if r.jti == jti]

    def revoke_by(self, form: Form) -> dict[str, Any]:
        """Revoke by ``jti``, ``user`` or ``run_id`` (trusted clients only)."""
        now = self.now()
        client = self.clients.authenticate(form, now=now)
        if not (entry := self.directory.clients.get(client)) or not entry.trusted:
            raise UnauthorizedClient("only a trusted client may revoke by user or run",
                                     reason="client_not_trusted")
        given = {k: single(form, k) for k in ("jti", "user", "run_id")}
        chosen = [(k, v) for k, v in given.items() if v is not None]
        if len(chosen) != 1:
            raise InvalidRequest("give exactly one of jti, user, run_id", reason="target_required")
        kind, value = chosen[0]
        if kind == "jti":
            self.revocation.revoke_jti(value, expires_at=now + 900)
            result: dict[str, Any] = {"revoked": "jti", "jti": value}
        elif kind == "user":
            result = {"revoked": "user", "user": value,
                      "version": self.revocation.revoke_user(value)}
        else:
            self.revocation.revoke_run(value)
            result = {"revoked": "run", "run_id": value}
        self._audit("revoke", "allow", f"{result['revoked']}_revoked", client,
                    f"{kind}:{value}", None, 200)
        return result

    def _may_revoke(self, client: str, claims: AccessClaims) -> bool:
        entry = self.directory.clients.get(client)
        return bool(entry and entry.trusted) or client == claims.client_id \
            or client in claims.actors

    # -- audit --------------------------------------------------------------------------------

    def audit_refused_request(self, exc: Exception, *, target: str = "") -> None:
        """Audit a ``/token`` request refused before its client was authenticated."""
        self._audit_refusal("token", None, target, exc, None)

    def _audit_refusal(self, action: str, client: str | None, target: str, exc: Exception,
                       subject: AccessClaims | None, *, user: str | None = None) -> None:
        status = getattr(exc, "status", 400)
        reason = getattr(exc, "reason", "error")
        self._audit(action, "deny", reason, client, target, subject, status, user=user)

    def _audit(self, action: str, decision: str, reason: str, client: str | None, resource: str,
               claims: AccessClaims | None, status: int, *, user: str | None = None) -> None:
        if self.audit is None:
            return
        self.audit.append(AuditRecord(
            time=datetime.fromtimestamp(self.clock(), UTC), service="authserver", action=action,
            resource=_audit_text(resource) or "", decision=decision,  # type: ignore[arg-type]
            reason=reason, performed_by=client,
            on_behalf_of=claims.sub if claims else _audit_text(user, 128),
            chain=tuple(claims.chain()) if claims else (),
            scopes=tuple(sorted(claims.scopes)) if claims else (),
            context=claims.ctx.model_dump() if claims else {},
            jti=claims.jti if claims else None, run_id=claims.ctx.run_id if claims else None,
            request_id=None, status=status))


def _require_claimed(registry: PendingCheck) -> None:
    """The client's assertion was claimed now (so the client is authenticated), or refuse."""
    try:
        claimed = registry.claimed()
    except Unavailable as exc:
        raise _Unauthenticated(exc) from exc
    except PredatesMemory:
        raise _Unauthenticated(assertion_predates_registry()) from None
    if not claimed:
        raise _Unauthenticated(assertion_replayed())


class _Unauthenticated(Exception):
    """A refusal met before the client's assertion was claimed (so before it was
    authenticated); ``error`` is what the client is answered."""

    def __init__(self, error: InvalidClient | Unavailable) -> None:
        super().__init__(error.reason)
        self.error = error


def _peek(form: Form, name: str) -> str:
    """A parameter's first value for the audit record only; validation happens elsewhere."""
    values = form.get(name) or [""]
    return values[0]


_AUDIT_TEXT = re.compile(r"[\x21-\x7e]+")


def _audit_text(value: str | None, limit: int = 256) -> str | None:
    """Client-supplied text fit for an audit record: short printable ASCII that is not a token.

    Anything else (a pasted token, a huge or binary value) is recorded as a placeholder, never
    truncated, so no part of it is stored and the record is always valid.
    """
    if not value:
        return value
    if len(value) > limit or not _AUDIT_TEXT.fullmatch(value) or contains_raw_jwt(value):
        return "[unrecognised]"
    return value


def _context(value: object) -> Context:
    if not isinstance(value, dict):
        raise InvalidGrant("grant assertion needs a ctx object", reason="missing_context")
    try:
        return Context.model_validate(value)
    except ValueError as exc:
        raise InvalidGrant("grant assertion ctx is invalid", reason="invalid_context") from exc
