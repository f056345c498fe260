"""RFC 7523 JWT client assertions (``private_key_jwt``) and grant assertions.

An agent proves who it is by signing a short-lived JWT with its own key: ``iss`` and ``sub`` are its
client id, ``aud`` the authorization server, ``jti`` unique (the server refuses a replay), ``iat``
when it was signed (the replay check needs it: RFC 7523 lets a server require it). The
orchestrator, a trusted client, uses the same form as an authorization grant whose ``sub`` is the
user a run acts for and whose ``ctx`` is the event the run is rooted in.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import InvalidClient, OAuthError
from orchestrator.identity import _jws
from orchestrator.identity._exchange import new_jti
from orchestrator.identity._keys import PublicKey, SigningKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"})
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti")


def make_assertion(key: SigningKey, *, issuer: str, subject: str, audience: str, now: int,
                   ttl: int = 60, extra: dict[str, Any] | None = None) -> str:
    """A signed assertion; ``extra`` adds claims (the orchestrator's ``ctx``)."""
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl,
              "jti": new_jti(), **(extra or {})}
    return _jws.sign(claims, key, {"kid": key.kid})


@dataclass(frozen=True)
class AssertionPolicy:
    audiences: frozenset[str]
    allowed_algs: tuple[str, ...]
    leeway: int
    max_lifetime: int
    max_bytes: int = 8192

    @staticmethod
    def issued_at(claims: dict[str, Any]) -> int:
        """When an assertion with these verified claims was issued (its ``iat``, to the second
        below), for its replay claim."""
        return math.floor(claims["iat"])


ClientKeyLookup = Callable[[str], Mapping[str, PublicKey]]
"""A client's registered public keys by ``kid`` (empty for a client with none)."""


def verify_assertion(assertion: object, *, keys: ClientKeyLookup,
                     policy: AssertionPolicy, now: int, error: type[OAuthError] = InvalidClient,
                     expected_issuer: str | None = None) -> dict[str, Any]:
    """Verify an assertion signed by the key registered for its issuer; return its claims.

    The key comes from the registry by the claimed issuer, never from the assertion's header.
    Refusals raise ``error`` (``InvalidClient`` for client authentication, ``InvalidGrant`` for a
    grant assertion) with a specific reason. Replay is the caller's check on the returned ``jti``.

    The assertion is decoded once; the checks and their order are those of the PyJWT calls this
    replaced (``get_unverified_header``, an unverified ``decode``, then ``decode`` with the key,
    the audiences, the leeway and ``require=[iss, sub, aud, exp, iat, jti]``): see
    :func:`_decodable` and :func:`_claims_refusal`. Unlike PyJWT, ``iat`` must be a number
    (not a boolean), as the replay check compares it.
    """
    def refuse(reason: str, message: str) -> OAuthError:
        return error(message, reason=reason)

    if not isinstance(assertion, str) or len(assertion) > policy.max_bytes:
        raise refuse("malformed_assertion", "assertion must be a compact JWT")
    parts = _jws.split(assertion)
    if parts is None:
        raise refuse("malformed_assertion", "assertion must be a compact JWT")
    try:
        header = _jws.unverified_header(parts[0])
        if not _decodable(header):
            raise _jws.MalformedJWS("header PyJWT refuses to decode")
        segments = _jws.decode_segments(parts, header)
        unverified = json.loads(segments.payload)
    except (_jws.MalformedJWS, ValueError, RecursionError, TypeError) as exc:
        raise refuse("malformed_assertion", "assertion cannot be decoded") from exc
    if not isinstance(unverified, dict):
        raise refuse("malformed_assertion", "assertion cannot be decoded")
    if _KEY_HEADERS & set(header) or header.get("alg") not in policy.allowed_algs:
        raise refuse("assertion_alg_refused", "assertion header is not acceptable")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or unverified.get("sub") is None:
        raise refuse("malformed_assertion", "assertion needs iss and sub")
    if expected_issuer is not None and issuer != expected_issuer:
        raise refuse("client_mismatch", "assertion issuer is not the authenticated client")
    key = _registered_key(keys(issuer), header.get("kid"))
    if isinstance(key, str):
        raise refuse(key, "no key is registered for this client" if key == "unknown_client"
                     else "the assertion's kid names no key registered for this client")
    if header.get("alg") != key.alg:
        raise refuse("assertion_alg_refused", "alg differs from the registered key")
    try:
        valid = _jws.signature_ok(segments, key)
    except _jws.MalformedJWS as exc:
        raise refuse("malformed_assertion", "assertion claims are invalid") from exc
    if not valid:
        raise refuse("assertion_bad_signature", "assertion signature does not verify")
    payload = unverified  # the bytes just verified are the ones decoded above
    refusal = _claims_refusal(payload, policy)
    if refusal is not None:
        raise refuse(*refusal)
    exp = payload["exp"]
    if not isinstance(exp, int) or exp - now > policy.max_lifetime:
        raise refuse("assertion_lifetime_too_long", "assertion lives too long")
    if not isinstance(payload["jti"], str) or not 8 <= len(payload["jti"]) <= 128:
        raise refuse("malformed_assertion", "assertion jti must be 8-128 characters")
    return payload


def _registered_key(registered: Mapping[str, PublicKey], kid: object) -> PublicKey | str:
    """The registered key an assertion names by ``kid`` (or the client's only key when it names
    none), else the refusal's reason."""
    if not registered:
        return "unknown_client"
    if kid is None and len(registered) == 1:
        return next(iter(registered.values()))
    key = registered.get(kid) if isinstance(kid, str) else None
    return "unknown_key" if key is None else key


def _decodable(header: dict[str, Any]) -> bool:
    """Whether PyJWT decodes a token with this header at all: a string ``kid``; no ``b64``
    false (its payload segment would have to be empty); a ``crit`` that is a non-empty list
    of extensions it supports (only ``b64``) and that the header carries."""
    if "kid" in header and not isinstance(header["kid"], str):
        return False
    if header.get("b64", True) is False:
        return False
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit:
            return False
        if any(not isinstance(ext, str) or ext != "b64" or ext not in header for ext in crit):
            return False
    return True


def _claims_refusal(payload: dict[str, Any], policy: AssertionPolicy) -> tuple[str, str] | None:
    """PyJWT's claim checks, in its order, against the wall clock as it read it: required
    claims, ``iat`` (not in the future), ``nbf``, ``exp`` (each with leeway), ``aud`` against
    the policy's audiences, ``sub`` and ``jti`` strings."""
    malformed = ("malformed_assertion", "assertion claims are invalid")
    for claim in _REQUIRED:
        if payload.get(claim) is None:
            return "malformed_assertion", f"assertion lacks the {claim!r} claim"
    current = time.time()
    iat = payload["iat"]
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not math.isfinite(iat):
        return "malformed_assertion", "assertion iat must be a number"
    if iat > current + policy.leeway:
        return "assertion_not_yet_valid", "assertion was issued in the future"
    try:
        if "nbf" in payload and int(payload["nbf"]) > current + policy.leeway:
            return malformed
        expired = int(payload["exp"]) <= current - policy.leeway
    except (ValueError, TypeError, OverflowError):
        return malformed
    if expired:
        return "assertion_expired", "assertion has expired"
    aud = payload["aud"]
    if not aud:
        return malformed
    claimed = [aud] if isinstance(aud, str) else aud
    if not isinstance(claimed, list) or any(not isinstance(a, str) for a in claimed) \
            or not any(a in claimed for a in policy.audiences):
        return "assertion_audience_mismatch", "assertion is not for this server"
    if not isinstance(payload["sub"], str) or not isinstance(payload["jti"], str):
        return malformed
    return None
