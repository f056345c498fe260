"""What the token endpoint's grants share: their identifiers, the response (RFC 8693 section
2.2.1), and issuing a decided grant (sign, audit, answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.authserver._context import Server
from orchestrator.identity import AccessClaims, Grant, mint

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TYPES = frozenset({TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT})


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


def issue(server: Server, grant: Grant, action: str, target: str, *, now: int,
          reason: str = "ok") -> TokenResponse:
    """Sign ``grant``'s claims with the current key, audit the issuance (with ``reason``: a
    warning where there is one), answer."""
    server.keyring.refresh(now=now)
    token = mint(grant.claims, server.keyring.current)
    c = grant.claims
    server.auditor.record(action, "allow", reason, c.client_id, target, c, 200)
    return TokenResponse(access_token=token, expires_in=c.exp - now, scope=c.scope,
                         claims=c, dropped=grant.dropped,
                         token_type="DPoP" if c.cnf is not None else "Bearer")
