"""RFC 7662 introspection (:func:`introspect`) and a token's ``log_url`` (:func:`audit_log`):
what the server tells about a valid token, and to whom."""

from __future__ import annotations

from typing import Any

from orchestrator.authserver._audit import INTROSPECT_ACTION
from orchestrator.authserver._context import Server
from orchestrator.authserver._forms import TokenRequestOf
from orchestrator.authserver._revocation import may_revoke
from orchestrator.errors import (
    InsufficientScope,
    InvalidDPoPProof,
    InvalidToken,
    NonceRefusal,
    OAuthError,
    ProofRefusal,
    Unavailable,
    UseDPoPNonce,
)
from orchestrator.identity import AccessClaims, Directory, check_holder, check_scheme


def introspect(server: Server, client: str, request: TokenRequestOf) -> dict[str, Any]:
    """RFC 7662: the full chain and context of a valid token to the authenticated ``client``
    if it is entitled to it (:func:`may_introspect`), else ``{"active": false}``: a caller that
    is not entitled learns nothing, not even whether the token is valid (RFC 7662 section 4).
    Every answer is one audit record: a refusal (no token, the registry away) too."""
    audit = server.auditor
    try:
        token = request.token.require()
        verified = server.verifier.verify(token, audience=server.audiences, now=server.now())
        server.revocation.check(verified.claims)
    except InvalidToken as exc:
        audit.record(INTROSPECT_ACTION, "deny", exc.reason, client, "token", None, 200)
        return {"active": False}
    except (OAuthError, Unavailable) as exc:
        audit.refused(INTROSPECT_ACTION, client, "token", exc, None)
        raise
    c = verified.claims
    if not may_introspect(server.directory, client, c):
        audit.record(INTROSPECT_ACTION, "deny", "introspection_not_entitled", client, "token",
                     c, 200)
        return {"active": False}
    audit.record(INTROSPECT_ACTION, "allow", "ok", client, "token", c, 200)
    return {"active": True, **c.public_view(), "token_type": "DPoP" if c.cnf else "Bearer",
            "username": c.sub, "chain": c.chain(), "current_actor": c.current_actor}


def may_introspect(directory: Directory, client: str, claims: AccessClaims) -> bool:
    """Who may revoke the token, and its audience: the agent its ``may_act`` names (a
    hand-off token's ``aud`` is this server), or a client its ``aud`` names."""
    audience = {claims.aud, *((claims.may_act.sub,) if claims.may_act else ())}
    return client in audience or may_revoke(directory, client, claims)


def audit_log(server: Server, bearer: str | None, jti: str, *, scheme: str = "bearer",
              proof: str | None = None) -> list[dict[str, Any]]:
    """The ``log_url`` of a token: the audit records of ``jti``, shown to a holder of that
    token or of any token exchanged from it (a valid, unrevoked token naming it). A DPoP-bound
    token is taken only with the ``DPoP`` scheme and a proof by its key (``proof``)."""
    if not bearer:
        raise InvalidToken("a bearer token is required", reason="missing_token")
    now = server.now()
    claims = server.verifier.verify(bearer, audience=server.audiences, now=now).claims
    _check_presented(server, claims, bearer, scheme, proof, now=now)
    server.revocation.check(claims)
    if jti != claims.jti and jti not in claims.ancestors:
        raise InsufficientScope("the bearer token is not this token or its descendant",
                                reason="not_in_chain")
    if server.audit is None:
        return []
    return [r.to_json() for r in server.audit.query(run_id=claims.ctx.run_id) if r.jti == jti]


def _check_presented(server: Server, claims: AccessClaims, token: str, scheme: str,
                     value: str | None, *, now: int) -> None:
    """A bound token only as ``DPoP`` with a first-used proof by its key for ``GET /audit``,
    an unbound one only as ``Bearer``, refused as a service refuses them (RFC 9449 sections
    7.1 and 9): 401 ``invalid_token`` for the token as presented, ``invalid_dpop_proof`` for
    the proof, ``use_dpop_nonce`` for the server's nonce."""
    check_scheme(claims, scheme, unbound_ok=True)
    if claims.cnf is None:
        return
    try:
        proof = (server.dpop.proof(value, now=now, url=f"{server.settings.auth_url}/audit",
                                   method="GET", access_token=token)
                 if value is not None else None)
        check_holder(claims, proof)
    except UseDPoPNonce as exc:
        raise NonceRefusal(exc.message, reason=exc.reason) from exc
    except InvalidDPoPProof as exc:
        raise ProofRefusal(exc.message, reason=exc.reason) from exc
