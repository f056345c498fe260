"""RFC 7009 revocation (:func:`revoke`: a token, and so every token exchanged from it), a
trusted client's revocation by ``jti``, user, run or the DPoP key tokens are bound to
(``jkt``: :func:`revoke_by`), and who may revoke
a token (:func:`may_revoke`). Every answer but an invalid token's (RFC 7009: 200, nothing
revoked) is one audit record, refusals included."""

from __future__ import annotations

import re
from typing import Any

from orchestrator.authserver._audit import REVOKE_ACTION, audit_text
from orchestrator.authserver._context import Server
from orchestrator.authserver._forms import RevokeByRequest, TokenRequestOf
from orchestrator.errors import (
    InvalidRequest,
    InvalidToken,
    OAuthError,
    UnauthorizedClient,
    Unavailable,
    UnsupportedTokenType,
)
from orchestrator.identity import (
    CTX_VALUE_PATTERN,
    JKT_PATTERN,
    JTI_PATTERN,
    MAX_LIFETIME_SECONDS,
    AccessClaims,
    Directory,
)

_JTI, _RUN_ID, _JKT = (re.compile(p) for p in (JTI_PATTERN, CTX_VALUE_PATTERN, JKT_PATTERN))


def revoke(server: Server, client: str, request: TokenRequestOf) -> None:
    """RFC 7009: revoke a token (and so every token exchanged from it), for the authenticated
    ``client``. A refusal is audited, naming the token's chain once it is verified."""
    claims: AccessClaims | None = None
    try:
        token = request.token.require()
        hint = request.token_type_hint.get()
        if hint is not None and hint not in ("access_token", "refresh_token"):
            raise UnsupportedTokenType("token_type_hint is not supported")
        try:
            claims = server.verifier.verify(token, audience=server.audiences,
                                            now=server.now()).claims
        except InvalidToken:
            return  # RFC 7009 2.2: an invalid token is answered 200 and nothing happens
        if not may_revoke(server.directory, client, claims):
            raise UnauthorizedClient("client may not revoke this token",
                                     reason="not_token_holder")
        server.revocation.revoke_jti(claims.jti, expires_at=claims.exp)
    except (OAuthError, Unavailable) as exc:
        target = f"jti:{claims.jti}" if claims is not None else ""
        server.auditor.refused(REVOKE_ACTION, client, target, exc, claims)
        raise
    server.auditor.record(REVOKE_ACTION, "allow", "token_revoked", client, f"jti:{claims.jti}",
                          claims, 200)


def revoke_by(server: Server, client: str, request: RevokeByRequest) -> dict[str, Any]:
    """Revoke by ``jti``, ``user``, ``run_id`` or ``jkt`` (every token bound to that DPoP key;
    the key's registration is ``infrabot keys revoke``'s) (trusted clients only): one audit
    record, the
    target named as safe text (refusals included, once there is one target)."""
    target = ""
    try:
        kind, value = _target(server, client, request)
        target = f"{kind}:{audit_text(value, 128)}"
        _check_shape(server, kind, value)
        result = _revoke_by(server, kind, value)
    except (OAuthError, Unavailable) as exc:
        server.auditor.refused(REVOKE_ACTION, client, target, exc, None)
        raise
    server.auditor.record(REVOKE_ACTION, "allow", f"{result['revoked']}_revoked", client,
                          target, None, 200)
    return result


def _target(server: Server, client: str, request: RevokeByRequest) -> tuple[str, str]:
    """The one target a trusted client named: its kind and its value as sent."""
    if not (entry := server.directory.clients.get(client)) or not entry.trusted:
        raise UnauthorizedClient("only a trusted client may revoke by user, run or key",
                                 reason="client_not_trusted")
    given = {p.name: p.get() for p in (request.jti, request.user, request.run_id, request.jkt)}
    chosen = [(k, v) for k, v in given.items() if v is not None]
    if len(chosen) != 1:
        raise InvalidRequest("give exactly one of jti, user, run_id, jkt",
                             reason="target_required")
    return chosen[0]


def _check_shape(server: Server, kind: str, value: str) -> None:
    """Before anything is written: a token id, a run id of a context's shape, a user the
    directory knows (as ``user:<name>``), or a key's RFC 7638 thumbprint. A well-formed jti,
    run id or thumbprint never seen is still a target: the server keeps no list of issued
    tokens, and a run may be revoked ahead."""
    if kind == "jti" and not _JTI.fullmatch(value):
        raise InvalidRequest("jti is not a token id (8 to 64 of A-Z a-z 0-9 _ -)",
                             reason="malformed_jti")
    if kind == "run_id" and not _RUN_ID.fullmatch(value):
        raise InvalidRequest("run_id is not a run id (up to 128 of A-Z a-z 0-9 _ . / : @ + -, "
                             "beginning with a letter or digit)", reason="malformed_run_id")
    if kind == "jkt" and not _JKT.fullmatch(value):
        raise InvalidRequest("jkt is not a key's RFC 7638 thumbprint (43 of A-Z a-z 0-9 _ -)",
                             reason="malformed_jkt")
    if kind == "user" and value not in server.directory.users:
        raise InvalidRequest("user is not a user the directory knows (give it as user:<name>)",
                             reason="unknown_user")


def _revoke_by(server: Server, kind: str, value: str) -> dict[str, Any]:
    if kind == "jti":
        server.revocation.revoke_jti(value, expires_at=server.now() + MAX_LIFETIME_SECONDS)
        return {"revoked": "jti", "jti": value}
    if kind == "jkt":
        server.revocation.revoke_key(value, expires_at=server.now() + MAX_LIFETIME_SECONDS)
        return {"revoked": "jkt", "jkt": value}
    if kind == "user":
        return {"revoked": "user", "user": value,
                "version": server.revocation.revoke_user(value)}
    server.revocation.revoke_run(value)
    return {"revoked": "run", "run_id": value}


def may_revoke(directory: Directory, client: str, claims: AccessClaims) -> bool:
    """A trusted client, or a member of the token's chain: the client it was issued to
    and every actor in its ``act`` chain."""
    entry = directory.clients.get(client)
    return bool(entry and entry.trusted) or client == claims.client_id \
        or client in claims.actors
