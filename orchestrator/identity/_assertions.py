"""RFC 7523 JWT client assertions (``private_key_jwt``) and grant assertions.

An agent proves who it is by signing a short-lived JWT with its own key: ``iss`` and ``sub`` are its
client id, ``aud`` the authorization server, ``jti`` unique (the server refuses a replay). The
orchestrator, a trusted client, uses the same form as an authorization grant whose ``sub`` is the
user a run acts for and whose ``ctx`` is the event the run is rooted in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.api_jws import PyJWS

from orchestrator.errors import InvalidClient, OAuthError
from orchestrator.identity._exchange import new_jti
from orchestrator.identity._keys import PublicKey, SigningKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"})
_jws = PyJWS()


def make_assertion(key: SigningKey, *, issuer: str, subject: str, audience: str, now: int,
                   ttl: int = 60, extra: dict[str, Any] | None = None) -> str:
    """A signed assertion; ``extra`` adds claims (the orchestrator's ``ctx``)."""
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl,
              "jti": new_jti(), **(extra or {})}
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})


@dataclass(frozen=True)
class AssertionPolicy:
    audiences: frozenset[str]
    allowed_algs: tuple[str, ...]
    leeway: int
    max_lifetime: int
    max_bytes: int = 8192


def verify_assertion(assertion: object, *, keys: Callable[[str], PublicKey | None],
                     policy: AssertionPolicy, now: int, error: type[OAuthError] = InvalidClient,
                     expected_issuer: str | None = None) -> dict[str, Any]:
    """Verify an assertion signed by the key registered for its issuer; return its claims.

    The key comes from the registry by the claimed issuer, never from the assertion's header.
    Refusals raise ``error`` (``InvalidClient`` for client authentication, ``InvalidGrant`` for a
    grant assertion) with a specific reason. Replay is the caller's check on the returned ``jti``.
    """
    def refuse(reason: str, message: str) -> OAuthError:
        return error(message, reason=reason)

    if not isinstance(assertion, str) or len(assertion) > policy.max_bytes:
        raise refuse("malformed_assertion", "assertion must be a compact JWT")
    parts = assertion.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise refuse("malformed_assertion", "assertion must be a compact JWT")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, RecursionError, TypeError) as exc:
        raise refuse("malformed_assertion", "assertion cannot be decoded") from exc
    if _KEY_HEADERS & set(header) or header.get("alg") not in policy.allowed_algs:
        raise refuse("assertion_alg_refused", "assertion header is not acceptable")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or unverified.get("sub") is None:
        raise refuse("malformed_assertion", "assertion needs iss and sub")
    if expected_issuer is not None and issuer != expected_issuer:
        raise refuse("client_mismatch", "assertion issuer is not the authenticated client")
    key = keys(issuer)
    if key is None:
        raise refuse("unknown_client", "no key is registered for this client")
    if header.get("alg") != key.alg:
        raise refuse("assertion_alg_refused", "alg differs from the registered key")
    try:
        payload = jwt.decode(
            assertion, key.key, algorithms=[key.alg], audience=list(policy.audiences),
            leeway=policy.leeway, options={"require": ["iss", "sub", "aud", "exp", "jti"],
                                           "verify_iat": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise refuse("assertion_expired", "assertion has expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise refuse("assertion_audience_mismatch", "assertion is not for this server") from exc
    except jwt.InvalidSignatureError as exc:
        raise refuse("assertion_bad_signature", "assertion signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise refuse("malformed_assertion", "assertion claims are invalid") from exc
    exp = payload["exp"]
    if not isinstance(exp, int) or exp - now > policy.max_lifetime:
        raise refuse("assertion_lifetime_too_long", "assertion lives too long")
    if not isinstance(payload["jti"], str) or not 8 <= len(payload["jti"]) <= 128:
        raise refuse("malformed_assertion", "assertion jti must be 8-128 characters")
    return payload

