"""The RFC 7523 JWT-bearer grant: the trusted orchestrator roots a run in a user and an event,
with an assertion whose ``sub`` is the user and whose ``ctx`` is the event (:func:`root_grant`);
:func:`issue_root` is the same issuance in process (the CLI's stand-in for an IdP login)."""

from __future__ import annotations

from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from orchestrator.authserver._context import Server
from orchestrator.authserver._forms import TokenRequest
from orchestrator.authserver._grants import TokenResponse, issue
from orchestrator.errors import (
    InvalidGrant,
    OAuthError,
    PredatesMemory,
    UnauthorizedClient,
    Unavailable,
)
from orchestrator.identity import (
    Context,
    Grant,
    User,
    bound,
    decide_root,
    hand_off_binding,
    parse_scopes,
    verify_assertion,
)


def root_grant(server: Server, client: str, request: TokenRequest, *,
               now: int) -> TokenResponse:
    """RFC 7523 grant for an authenticated ``client``, which must be trusted. A refusal after
    the assertion verified is audited with the run id its ``ctx`` names (:func:`named_run`),
    so the run's records say why it never started (the id is trusted for nothing else)."""
    user, target, run_id = "", request.audience.first, None
    try:
        entry = server.directory.clients.get(client, None)
        if not entry or not entry.trusted:
            raise UnauthorizedClient("only a trusted client may obtain root user tokens",
                                     reason="client_not_trusted")
        policy = server.assertion_policy
        claims = verify_assertion(request.assertion.require(), keys=server.client_keys,
                                  policy=policy, now=now, error=InvalidGrant,
                                  expected_issuer=client)
        run_id = named_run(claims.get("ctx"))
        ctx = context_of(claims.get("ctx"))
        try:
            first = server.revocation.claim_once(
                f"grant:{client}:{claims['jti']}", issued_at=policy.issued_at(claims),
                ttl=policy.replay_ttl(claims, now=now))
        except PredatesMemory:
            raise InvalidGrant("grant assertion was issued before the replay registry's "
                               "memory began (it restarted), so whether it was used cannot "
                               "be told", reason="assertion_predates_registry") from None
        if not first:
            raise InvalidGrant("grant assertion was already used", reason="assertion_replayed")
        user = str(claims["sub"])
        scope = request.scope.require()
        first_agent = request.audience.require()
        grant = root(server, user, sorted(parse_scopes(scope)), ctx, first_agent, client,
                     now=now)
    except (OAuthError, Unavailable) as exc:
        server.auditor.refused("root_grant", client, target, exc, None, user=user or None,
                               run_id=run_id)
        raise
    return issue(server, grant, "root_grant", target, now=now)


def issue_root(server: Server, user: str, scopes: list[str], ctx: Context, first_agent: str,
               client: str) -> TokenResponse:
    """The root token of a run issued in process."""
    now = server.now()
    try:
        grant = root(server, user, scopes, ctx, first_agent, client, now=now)
    except (OAuthError, Unavailable) as exc:
        server.auditor.refused("root_grant", client, first_agent, exc, None, user=user,
                               run_id=ctx.run_id)
        raise
    return issue(server, grant, "root_grant", first_agent, now=now)


def root(server: Server, user: str, scopes: list[str], ctx: Context, first_agent: str,
         client: str, *, now: int, holder: User | None = None) -> Grant:
    """The root grant's claims: the user's standing in the registry, then the rules."""
    standing = server.revocation.standing(user)
    grant = decide_root(user, scopes, ctx, first_agent, server.directory,
                        server.issuance(server.settings.root_token_ttl_seconds), client=client,
                        user_version=standing.user_version,
                        registry_epoch=standing.registry_epoch, now=now, holder=holder)
    # The root token is the first hand-off: bound to the first agent's registered DPoP key.
    return bound(grant, hand_off_binding(server.dpop.registered(first_agent),
                                         default=server.settings.dpop_binding))


def context_of(value: object) -> Context:
    """The run's context an orchestrator's assertion names. It may not say the run came from
    an identity provider (``idp``, ``idp_subject``): only a verified provider token says that."""
    if not isinstance(value, dict):
        raise InvalidGrant("grant assertion needs a ctx object", reason="missing_context")
    try:
        ctx = Context.model_validate(value)
    except ValueError as exc:
        raise InvalidGrant("grant assertion ctx is invalid", reason="invalid_context") from exc
    if ctx.idp is not None or ctx.idp_subject is not None:
        raise InvalidGrant("only a verified identity-provider token roots a run in it",
                           reason="invalid_context")
    return ctx


_RUN_ID = TypeAdapter(Annotated[str, Context.model_fields["run_id"]])


def named_run(value: object) -> str | None:
    """The run id a verified assertion's ``ctx`` names, for the audit record of a refusal: a
    valid ``run_id`` is taken even when another field of the context is refused (so the run's
    records say why), anything else is None. Never called before the assertion verified."""
    if not isinstance(value, dict):
        return None
    try:
        return _RUN_ID.validate_python(value.get("run_id"))
    except ValidationError:
        return None
