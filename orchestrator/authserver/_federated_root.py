"""A run rooted in a user's own identity provider: an RFC 8693 exchange whose ``subject_token``
is a trusted provider's token, asked for by the trusted orchestrator (docs/federation.md).

The orchestrator authenticates as itself (``private_key_jwt``) and names the run's context in
an ``actor_token`` it signs (its ``ctx`` claim, as in its RFC 7523 grant assertion). The
subject token is verified with the provider's keys, algorithms and audience from the
directory; the user it maps to may be granted what the directory gives (or, just in time, what
the provider's entry gives: nothing by default) ∩ what the token asserts ∩ what the workflow
needs ∩ the context rules. The root token's ``ctx`` records the provider's issuer and the
user's subject there (``idp``, ``idp_subject``).
"""

from __future__ import annotations

from orchestrator._log import get_logger
from orchestrator.authserver._context import Server
from orchestrator.authserver._forms import TokenRequest
from orchestrator.authserver._grants import TOKEN_TYPE_JWT, TokenResponse, issue
from orchestrator.authserver._jwt_bearer import context_of, named_run, root
from orchestrator.authserver._token_exchange import actor_claims
from orchestrator.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    UnauthorizedClient,
    Unavailable,
)
from orchestrator.identity import Context, FederatedIdentity, federated_holder, parse_scopes

TOKEN_TYPE_ID = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
USER_TOKEN_TYPES = frozenset({TOKEN_TYPE_JWT, TOKEN_TYPE_ACCESS, TOKEN_TYPE_ID})
INVERTED_NORMALISED = "inverted_act_normalised"


def root_exchange(server: Server, client: str, request: TokenRequest, *,
                  now: int) -> TokenResponse:
    """The root token of a run for the user a trusted provider's token names. The actor token
    is verified before the user's token, so a refusal after it verified (the user's token, the
    user, the scopes) is audited with the run id its ``ctx`` names (:func:`named_run`)."""
    identity: FederatedIdentity | None = None
    target, run_id = request.audience.first, None
    try:
        entry = server.directory.clients.get(client, None)
        if not entry or not entry.trusted:
            raise UnauthorizedClient("only a trusted client may root a run in a user's token",
                                     reason="client_not_trusted")
        if request.subject_token_type.require() not in USER_TOKEN_TYPES:
            raise InvalidRequest("subject_token_type is not supported",
                                 reason="unsupported_subject_token_type")
        claims = actor_claims(server, client, request, now=now)
        run_id = named_run(claims.get("ctx")) if claims else None  # verified: audited only
        try:
            provider, identity = server.user_tokens.verify(request.subject_token.require())
        except InvalidToken as exc:
            raise InvalidRequest(f"subject_token: {exc.message}", reason=exc.reason) from exc
        if claims is None:
            raise InvalidRequest("an actor_token naming the run's ctx is required",
                                 reason="missing_context")
        ctx = _rooted_in(context_of(claims.get("ctx")), identity)
        holder, ignored = federated_holder(server.directory, provider, identity)
        if ignored:  # never granted: the directory does not give them
            get_logger(user=identity.user, idp=identity.issuer).warning(
                "idp_permissions_ignored", scopes=sorted(ignored))
        grant = root(server, identity.user, sorted(parse_scopes(request.scope.require())), ctx,
                     request.audience.require(), client, now=now, holder=holder)
    except (OAuthError, Unavailable) as exc:
        server.auditor.refused("root_grant", client, target, exc, None,
                               user=identity.user if identity else None, run_id=run_id)
        raise
    if identity.inverted:
        get_logger(user=identity.user, idp=identity.issuer).warning(INVERTED_NORMALISED)
    return issue(server, grant, "root_grant", target, now=now,
                 reason=INVERTED_NORMALISED if identity.inverted else "ok")


def _rooted_in(ctx: Context, identity: FederatedIdentity) -> Context:
    """The run's context with the provider and the user's subject there, validated."""
    try:
        return Context.model_validate({**ctx.model_dump(), "idp": identity.issuer,
                                       "idp_subject": identity.subject})
    except ValueError as exc:
        raise InvalidGrant("the provider's issuer or subject cannot be recorded in a context",
                           reason="invalid_context") from exc
