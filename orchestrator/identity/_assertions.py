"""RFC 7523 JWT client assertions (``private_key_jwt``) and grant assertions.

An agent proves who it is by signing a short-lived JWT with its own key: ``iss`` and ``sub`` are its
client id, ``aud`` the authorization server, ``jti`` unique (the server refuses a replay), ``iat``
when it was signed (the replay check needs it: RFC 7523 lets a server require it). The
orchestrator, a trusted client, uses the same form as an authorization grant whose ``sub`` is the
user a run acts for and whose ``ctx`` is the event the run is rooted in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import InvalidClient, OAuthError
from orchestrator.identity import _jws
from orchestrator.identity._claims import is_time
from orchestrator.identity._exchange import new_jti
from orchestrator.identity._jws import KEY_HEADERS
from orchestrator.identity._keys import PublicKey, SigningKey
from orchestrator.identity._verify import Refusals, verify_jws

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
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

    def remaining(self, claims: dict[str, Any], *, now: int) -> int:
        """How long an assertion with these verified claims lives from now, or from its
        ``iat`` when its signer's clock runs ahead of ours (within the leeway): a client that
        signs ``exp = iat + max_lifetime`` is accepted whichever second we read it in."""
        return int(claims["exp"]) - max(now, self.issued_at(claims))

    def replay_ttl(self, claims: dict[str, Any], *, now: int) -> int:
        """How long the replay registry must hold the ``jti`` of an assertion with these
        verified claims: until it expires, plus the leeway its expiry is read with."""
        return max(1, int(claims["exp"]) - now + self.leeway)


ClientKeyLookup = Callable[[str], Mapping[str, PublicKey]]
"""A client's registered public keys by ``kid`` (empty for a client with none)."""


_REFUSALS = Refusals(
    not_a_string=("malformed_assertion", "assertion must be a compact JWT"),
    too_large=("malformed_assertion", "assertion must be a compact JWT"),
    not_compact=("malformed_assertion", "assertion must be a compact JWT"),
    undecodable_header=("malformed_assertion", "assertion cannot be decoded"),
    undecodable=("malformed_assertion", "assertion cannot be decoded"),
    payload_not_object=("malformed_assertion", "assertion cannot be decoded"),
    unsuitable_key=("malformed_assertion", "assertion claims are invalid"),
    malleable=("assertion_malleable_signature",
               "ES256 assertion signature must be in its low-S form"),
    bad_signature=("assertion_bad_signature", "assertion signature does not verify"),
)


def verify_assertion(assertion: object, *, keys: ClientKeyLookup,
                     policy: AssertionPolicy, now: int, error: type[OAuthError] = InvalidClient,
                     expected_issuer: str | None = None) -> dict[str, Any]:
    """Verify an assertion signed by the key registered for its issuer; return its claims.

    The one verifier (:func:`~._verify.verify_jws`) under the assertion policy: the key comes
    from the registry by the claimed issuer (RFC 7523, so the payload is decoded before the key
    is chosen), never from the assertion's header. Refusals raise ``error`` (``InvalidClient``
    for client authentication, ``InvalidGrant`` for a grant assertion) with a specific reason.
    Replay is the caller's check on the returned ``jti``.

    The refusals and their order are those of the PyJWT calls this once was
    (``get_unverified_header``, an unverified ``decode``, then ``decode`` with the key, the
    audiences, the leeway and ``require=[iss, sub, aud, exp, iat, jti]``): see
    :func:`_claims_refusal`. Unlike PyJWT, ``iat`` must be a number (not a boolean), as the
    replay check compares it, and times are judged at ``now``, not at the wall clock.
    """
    rules = _AssertionRules(keys, policy, error, expected_issuer)
    return verify_jws(assertion, rules, now=now)


@dataclass(frozen=True, slots=True)
class _AssertionRules:
    """The assertion policy for one verification."""

    keys: ClientKeyLookup
    policy: AssertionPolicy
    error: type[OAuthError]
    expected_issuer: str | None
    refusals = _REFUSALS
    key_named_by_payload = True
    accepts_high_s = False

    @property
    def max_bytes(self) -> int:
        return self.policy.max_bytes

    def refuse(self, reason: str, message: str) -> OAuthError:
        return self.error(message, reason=reason)

    def check_header(self, header: dict[str, Any]) -> None:
        if KEY_HEADERS & set(header) or "crit" in header \
                or header.get("alg") not in self.policy.allowed_algs:
            raise self.refuse("assertion_alg_refused", "assertion header is not acceptable")

    def choose_key(self, header: dict[str, Any], payload: dict[str, Any] | None) -> PublicKey:
        assert payload is not None  # key_named_by_payload
        issuer = payload.get("iss")
        if not isinstance(issuer, str) or payload.get("sub") is None:
            raise self.refuse("malformed_assertion", "assertion needs iss and sub")
        if self.expected_issuer is not None and issuer != self.expected_issuer:
            raise self.refuse("client_mismatch",
                              "assertion issuer is not the authenticated client")
        key = _registered_key(self.keys(issuer), header.get("kid"))
        if isinstance(key, str):
            raise self.refuse(key, "no key is registered for this client"
                              if key == "unknown_client"
                              else "the assertion's kid names no key registered for this client")
        if header.get("alg") != key.alg:
            raise self.refuse("assertion_alg_refused", "alg differs from the registered key")
        return key

    def check_claims(self, payload: dict[str, Any], key: PublicKey, size: int, *,
                     now: int) -> dict[str, Any]:
        policy = self.policy
        refusal = _claims_refusal(payload, policy, now=now)
        if refusal is not None:
            raise self.refuse(*refusal)
        exp = payload["exp"]
        if not isinstance(exp, int) or policy.remaining(payload, now=now) > policy.max_lifetime:
            raise self.refuse("assertion_lifetime_too_long",
                              f"assertion lives longer than {policy.max_lifetime}s")
        if not isinstance(payload["jti"], str) or not 8 <= len(payload["jti"]) <= 128:
            raise self.refuse("malformed_assertion", "assertion jti must be 8-128 characters")
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


def _claims_refusal(payload: dict[str, Any], policy: AssertionPolicy, *,
                    now: int) -> tuple[str, str] | None:
    """PyJWT's claim checks, in its order, at ``now``: required claims, ``iat`` (not in the
    future), ``nbf``, ``exp`` (each with leeway), ``aud`` against the policy's audiences,
    ``sub`` and ``jti`` strings."""
    malformed = ("malformed_assertion", "assertion claims are invalid")
    for claim in _REQUIRED:
        if payload.get(claim) is None:
            return "malformed_assertion", f"assertion lacks the {claim!r} claim"
    iat = payload["iat"]
    if not is_time(iat):
        return "malformed_assertion", "assertion iat must be a number"
    if iat > now + policy.leeway:
        return "assertion_not_yet_valid", "assertion was issued in the future"
    try:
        if "nbf" in payload and int(payload["nbf"]) > now + policy.leeway:
            return malformed
        expired = int(payload["exp"]) <= now - policy.leeway
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
