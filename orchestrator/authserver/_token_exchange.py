"""RFC 8693 token exchange: an agent, authenticated by its client assertion, exchanges the token
it holds (the subject token) for one narrowed to its next hop (:func:`exchange`)."""

from __future__ import annotations

from typing import Any

from orchestrator.authserver._clients import (
    VerifiedClient,
    assertion_predates_registry,
    assertion_replayed,
)
from orchestrator.authserver._context import Server
from orchestrator.authserver._delegation import sent_record, with_chain
from orchestrator.authserver._forms import TokenRequest
from orchestrator.authserver._grants import SUBJECT_TYPES, TOKEN_TYPE_JWT, TokenResponse, issue
from orchestrator.errors import (
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    PredatesMemory,
    Unavailable,
)
from orchestrator.identity import (
    AccessClaims,
    ExchangeRequest,
    PendingCheck,
    Proof,
    VerifiedToken,
    bound,
    check_delegate,
    check_holder,
    decide,
    hand_off_binding,
    parse_scopes,
    peek_target,
    service_binding,
    verify_assertion,
)


def exchange(server: Server, verified: VerifiedClient, request: TokenRequest,
             proof: Proof | None, *, now: int) -> TokenResponse:
    """RFC 8693 for a client whose assertion verified; its one-time key is claimed in the
    registry round trip that checks the subject token. Until that claim is made the client
    is not authenticated, and a refusal then (a replayed assertion, an unreachable
    registry) is audited as an unauthenticated request, as the token endpoint audits one.

    ``proof``: the request's verified DPoP proof, if any. A bound subject token needs one by
    its key; the new token is bound as :mod:`orchestrator.identity._binding` says."""
    subject: VerifiedToken | None = None
    client = verified.client_id
    target = request.target
    try:
        with _claim_and_check(server, verified, request) as registry:
            try:
                subject = _subject(server, request, now=now)
            except (OAuthError, Unavailable):
                _require_claimed(registry)  # a replayed assertion is refused as that, first
                raise
            _require_claimed(registry)
            _check_standing(registry, subject, now=now)
        actor_claims(server, client, request, now=now)
        requested_type = request.requested_token_type.get()
        if requested_type is not None and requested_type not in SUBJECT_TYPES:
            raise InvalidRequest("requested_token_type is not supported",
                                 reason="unsupported_requested_token_type")
        scope = request.scope.get()
        grant = decide(ExchangeRequest(
            subject=subject, actor=client, scopes=parse_scopes(scope) if scope else None,
            resource=request.resource.get(), audience=request.audience.get(),
            joined=_joined(server, request, now=now)),
            server.directory, server.issuance(server.settings.token_ttl_seconds), now=now)
        # After the rules: a token exchanged by an agent it was not for is refused as that.
        check_holder(subject.claims, proof)
        check_delegate(subject.claims, proof, lambda: server.dpop.registered(client),
                       default=server.settings.dpop_binding)
        record = sent_record(server, client, request, subject.claims, now=now)
        grant = with_chain(server, bound(grant, _binding(server, request, proof)),
                           subject.claims, record, now=now)
    except _Unauthenticated as unauthenticated:
        server.auditor.refused_request(unauthenticated.error, target=target)
        raise unauthenticated.error from unauthenticated.error.__cause__
    except (OAuthError, Unavailable) as exc:
        server.auditor.refused("token_exchange", client, target, exc,
                               subject.claims if subject else None)
        raise
    return issue(server, grant, "token_exchange", target, now=now)


def _binding(server: Server, request: TokenRequest, proof: Proof | None) -> str | None:
    """The key the new token is bound to: for a service, the proof's; for a hand-off, the
    next agent's registered key (the request's target was checked by ``decide``)."""
    default = server.settings.dpop_binding
    audience = request.audience.get()
    if audience is not None:
        return hand_off_binding(server.dpop.registered(audience), default=default)
    resource = (request.resource.get() or "").rstrip("/")
    service = server.issuance(server.settings.token_ttl_seconds).services.get(resource)
    return service_binding(server.directory, service, proof, default=default)


def _claim_and_check(server: Server, client: VerifiedClient,
                     request: TokenRequest) -> PendingCheck:
    """The client's one-time claim and the subject token's revocation check, sent in one
    registry round trip before the subject token is verified (the check names what its
    payload says; see :meth:`RevocationStore.begin`)."""
    target = (peek_target(request.subject_token.first,
                          max_bytes=server.verifier.policy.max_bytes)
              if server.revocation.remote else None)  # in process: checked when verified
    try:
        return server.revocation.begin(target, claim=(client.replay_key, client.replay_ttl),
                                       issued_at=client.issued_at)
    except Unavailable as exc:
        raise _Unauthenticated(exc) from exc


def _check_standing(registry: PendingCheck, subject: VerifiedToken, *, now: int) -> None:
    """Not revoked (registry epoch, token, ancestors, run, user) and not at its end. Checked
    after the subject is verified, so a refusal is audited with the chain it refused."""
    try:
        registry.check(subject.claims)
    except InvalidToken as exc:
        raise InvalidRequest(f"subject_token: {exc.message}", reason=exc.reason) from exc
    if subject.claims.exp <= now:  # inside the verifier's leeway, but nothing left to give
        raise InvalidRequest("subject_token: token has expired", reason="token_expired")


MAX_JOINED = 8


def _joined(server: Server, request: TokenRequest, *, now: int) -> tuple[AccessClaims, ...]:
    """The verified, unrevoked branch tokens a join's hand-off names (none usually)."""
    given = (request.joined_tokens.get() or "").split()
    if len(given) > MAX_JOINED:
        raise InvalidRequest(f"at most {MAX_JOINED} joined tokens", reason="too_many_joined")
    out: list[AccessClaims] = []
    for token in given:
        try:
            claims = server.verifier.verify(token, audience=server.issuer, now=now).claims
            server.revocation.check(claims)
        except InvalidToken as exc:
            raise InvalidRequest(f"joined_tokens: {exc.message}", reason=exc.reason) from exc
        out.append(claims)
    return tuple(out)


def _subject(server: Server, request: TokenRequest, *, now: int) -> VerifiedToken:
    """The verified subject token. RFC 8693 2.2.2: an invalid one is ``invalid_request``."""
    token = request.subject_token.require()
    if request.subject_token_type.require() not in SUBJECT_TYPES:
        raise InvalidRequest("subject_token_type is not supported",
                             reason="unsupported_subject_token_type")
    try:
        return server.verifier.verify(token, audience=server.issuer, now=now)
    except InvalidToken as exc:
        raise InvalidRequest(f"subject_token: {exc.message}", reason=exc.reason) from exc


def actor_claims(server: Server, client: str, request: TokenRequest, *,
                 now: int) -> dict[str, Any] | None:
    """An ``actor_token``, if given, must be a JWT the caller itself signed, naming itself:
    its verified claims (None without one)."""
    actor_token = request.actor_token.get()
    if actor_token is None:
        if request.actor_token_type.get() is not None:
            raise InvalidRequest("actor_token_type without actor_token",
                                 reason="missing_parameter")
        return None
    if request.actor_token_type.get() != TOKEN_TYPE_JWT:
        raise InvalidRequest("actor_token_type must be the JWT token type",
                             reason="unsupported_actor_token_type")
    try:
        claims = verify_assertion(actor_token, keys=server.client_keys,
                                  policy=server.assertion_policy, now=now, error=InvalidRequest)
    except InvalidRequest as exc:
        raise InvalidRequest(f"actor_token: {exc.message}", reason="invalid_actor_token") \
            from exc
    if claims["iss"] != client or claims["sub"] != client:
        raise InvalidRequest("actor_token names an actor other than the authenticated client",
                             reason="actor_mismatch")
    return claims


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
