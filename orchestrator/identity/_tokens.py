"""Minting, and the access-token policy of the one verifier (:mod:`._verify`).

The verifier takes the algorithm allow-list, issuer, audience and keys from its caller, never from
the token. For an access token it checks, in order: size and shape, the header (``typ``, ``alg`` on
the allow-list, a ``kid``, no key or key location in the header, no ``crit``), the signature with
the key published under that ``kid`` (whose algorithm must match; an ES256 one only in its low-S
form, so a token has one valid encoding), then issuer, audience, expiry and not-before with
leeway, lifetime, required claims and the ``act`` chain (not inverted, no cycle, depth limit).
Every refusal is :class:`~orchestrator.errors.InvalidToken` with a specific ``reason``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic import ValidationError

from orchestrator.errors import InvalidScope, InvalidToken, Unavailable
from orchestrator.identity import _jws
from orchestrator.identity._claims import (
    AGENT_PREFIX,
    MAX_ACT_NESTING,
    USER_PREFIX,
    AccessClaims,
    act_nesting,
)
from orchestrator.identity._keys import JWKSet, PublicKey, SigningKey
from orchestrator.identity._verify import HeaderRules, Refusals, verify_jws

TYP = "at+jwt"
# The refusals every JWT this project verifies by a published key shares (tokens, federated).
HEADER_REFUSALS = {
    "key_in_header": ("key_in_header", "keys or key locations in the header are refused"),
    "crit": ("unsupported_crit", "no critical header extension is understood"),
    "unexpected_header": ("unexpected_header", "header has parameters other than alg, typ, kid"),
    "alg": ("alg_not_allowed", "signing algorithm is not on the allow-list"),
    "typ": ("wrong_typ", "typ must be at+jwt"),
    "kid": ("missing_kid", "header must name a kid"),
}
_HEADER = HeaderRules(typ=frozenset({"at+jwt", "application/at+jwt"}), typ_required=True,
                      kid_max=128, extra_params=frozenset(), refusals=HEADER_REFUSALS)
MAX_LIFETIME_SECONDS = 900


class KeySource(Protocol):
    def get(self, kid: str) -> PublicKey | None: ...


def mint(claims: AccessClaims, key: SigningKey) -> str:
    """Sign claims as an RFC 9068 access token."""
    payload = claims.model_dump(mode="json", exclude_none=True)
    return _jws.sign(payload, key, {"typ": TYP, "kid": key.kid})


class VerifiedToken:
    """Claims whose signature and rules the verifier checked. Only the verifier makes these."""

    __slots__ = ("claims", "kid", "size")
    _seal = object()

    def __init__(self, seal: object, claims: AccessClaims, kid: str, size: int) -> None:
        if seal is not VerifiedToken._seal:
            raise TypeError("VerifiedToken is produced only by TokenVerifier")
        self.claims = claims
        self.kid = kid
        self.size = size

    def __repr__(self) -> str:
        return f"VerifiedToken(sub={self.claims.sub!r}, chain={self.claims.chain()!r})"


@dataclass(frozen=True)
class VerifierPolicy:
    issuer: str
    allowed_algs: tuple[str, ...]
    leeway: int = 5
    max_bytes: int = 8192
    max_depth: int = 4


def _refuse(reason: str, message: str) -> InvalidToken:
    return InvalidToken(message, reason=reason)


_REFUSALS = Refusals(
    not_a_string=("malformed", "token must be a non-empty string"),
    too_large=("token_too_large", ""),  # the message names the policy's bound: see below
    not_compact=("malformed", "token is not a compact JWS (three base64url segments)"),
    undecodable=("malformed", "token cannot be decoded"),
    unsuitable_key=("malformed", "token cannot be decoded"),
    malleable=("malleable_signature", "ES256 signature must be in its low-S form"),
    bad_signature=("bad_signature", "signature does not verify"),
    payload_not_object=("malformed", "payload is not a JSON object"),
)
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "ctx",
             "user_version", "registry_epoch")


class TokenVerifier:
    """The one verifier (:func:`~._verify.verify_jws`) under the access-token policy."""

    def __init__(self, keys: KeySource, policy: VerifierPolicy) -> None:
        self._keys = keys
        self._policy = policy
        self._refusals = replace(
            _REFUSALS, too_large=("token_too_large", f"token exceeds {policy.max_bytes} bytes"))

    @property
    def policy(self) -> VerifierPolicy:
        return self._policy

    def verify(self, token: object, *, audience: str | frozenset[str], now: int) -> VerifiedToken:
        """Verify ``token`` for ``audience`` (one, or a set the caller trusts) at ``now``."""
        rules = _AccessTokenRules(self._keys, self._policy, self._refusals, audience)
        return verify_jws(token, rules, now=now)


@dataclass(frozen=True, slots=True)
class _AccessTokenRules:
    """The access-token policy for one verification: its audience is the caller's."""

    keys: KeySource
    policy: VerifierPolicy
    refusals: Refusals
    audience: str | frozenset[str]
    key_named_by_payload = False
    accepts_high_s = False

    @property
    def max_bytes(self) -> int:
        return self.policy.max_bytes

    @staticmethod
    def refuse(reason: str, message: str) -> InvalidToken:
        return _refuse(reason, message)

    def check_header(self, header: dict[str, Any]) -> None:
        _HEADER.check(header, self.policy.allowed_algs, _refuse)

    def choose_key(self, header: dict[str, Any], payload: dict[str, Any] | None) -> PublicKey:
        return published_key(self.keys, header)

    def check_claims(self, payload: dict[str, Any], key: PublicKey, size: int, *,
                     now: int) -> VerifiedToken:
        p = self.policy
        for name in _REQUIRED:
            if name not in payload:
                raise _refuse("missing_claim", f"required claim {name!r} is missing")
        if payload["iss"] != p.issuer:
            raise _refuse("issuer_mismatch", "issuer is not the configured issuer")
        aud = payload["aud"]
        audience = self.audience
        allowed = audience if isinstance(audience, frozenset) else frozenset({audience})
        if not isinstance(aud, str) or aud not in allowed:
            raise _refuse("audience_mismatch", "token is not meant for this audience")
        _check_times(payload, now=now, leeway=p.leeway)
        nesting = act_nesting(payload.get("act"))
        if nesting < 0:
            raise _refuse("invalid_act", "act must be an object with a sub")
        if nesting > MAX_ACT_NESTING:
            raise _refuse("max_depth_exceeded", "act chain is too deep")
        try:
            claims = AccessClaims.model_validate(payload)
        except ValidationError as exc:
            field = ".".join(str(x) for x in exc.errors()[0]["loc"]) or "claims"
            raise _refuse("invalid_claims", f"claim {field!r} is invalid") from exc
        except InvalidScope as exc:  # raised as is by AccessClaims' scope validator
            raise _refuse("invalid_claims", "claim 'scope' is invalid") from exc
        check_chain(claims, max_depth=p.max_depth)
        return VerifiedToken(VerifiedToken._seal, claims, key.kid, size)


def published_key(keys: KeySource, header: dict[str, Any]) -> PublicKey:
    """The published key the header's ``kid`` names, whose algorithm must be the header's."""
    key = keys.get(header["kid"])
    if key is None:
        raise _refuse("unknown_kid", "no published key has this kid")
    if key.alg != header["alg"]:
        raise _refuse("alg_mismatch", "alg differs from the published key's algorithm")
    return key


def _check_times(payload: dict[str, Any], *, now: int, leeway: int) -> None:
    times = {k: payload.get(k) for k in ("exp", "iat", "nbf")}
    for name, value in times.items():  # exp and iat are required: null is not absent
        if (value is not None or name != "nbf") and (
                not isinstance(value, int) or isinstance(value, bool)):
            raise _refuse("invalid_claims", f"claim {name!r} must be an integer")
    exp, iat, nbf = times["exp"], times["iat"], times["nbf"]
    assert isinstance(exp, int) and isinstance(iat, int)
    if now >= exp + leeway:
        raise _refuse("token_expired", "token has expired")
    if iat > now + leeway or (nbf is not None and nbf > now + leeway):
        raise _refuse("token_not_yet_valid", "token is not valid yet")
    if exp - iat > MAX_LIFETIME_SECONDS:
        raise _refuse("lifetime_too_long", f"token lifetime exceeds {MAX_LIFETIME_SECONDS}s")


def check_chain(claims: AccessClaims, *, max_depth: int) -> None:
    """The principal is a user, every actor an agent, no actor repeats, depth within policy."""
    actors = claims.actors
    if not claims.sub.startswith(USER_PREFIX):
        if any(a.startswith(USER_PREFIX) for a in actors) or claims.sub.startswith(AGENT_PREFIX):
            raise _refuse("inverted_chain", "sub must be the user; an agent is never the principal")
        raise _refuse("invalid_subject", "sub must be a user")
    if any(not a.startswith(AGENT_PREFIX) for a in actors):
        raise _refuse("inverted_chain", "every actor in act must be an agent")
    if len(set(actors)) != len(actors):
        raise _refuse("chain_cycle", "an actor appears twice in the chain")
    if len(actors) > max_depth:
        raise _refuse("max_depth_exceeded", f"chain has more than {max_depth} actors")


class CachedJWKS:
    """A :class:`KeySource` over a remote JWKS: fetched once, refreshed on an unknown ``kid`` at
    most once per ``min_refresh_seconds``, and (with ``max_age_seconds``) fetched again when
    older, so a key its publisher withdrew stops verifying. ``fetch`` raises
    :class:`~orchestrator.errors.Unavailable` when the key set cannot be reached; nothing is
    then trusted. ``parse`` reads the document (our own keys by default; a provider's keys are
    :func:`~._provider_keys.provider_key_set`).

    A refresh that fails keeps a set still within ``max_age_seconds`` (only the unknown ``kid``
    that asked is refused), never one past it: that set is dropped, and until a fetch succeeds
    every lookup is refused as unavailable. While no set is usable, a failed fetch is tried again
    at most once per ``min_refresh_seconds`` (lookups in between are refused without one), so a
    stream of tokens cannot turn an outage into a request each at the publisher."""

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        allowed_algs: tuple[str, ...],
        clock: Callable[[], float],
        min_refresh_seconds: float = 5.0,
        *,
        max_age_seconds: float | None = None,
        parse: Callable[[object, tuple[str, ...]], JWKSet] = JWKSet.from_dict,
    ) -> None:
        self._fetch = fetch
        self._algs = allowed_algs
        self._clock = clock
        self._min = min_refresh_seconds
        self._max_age = max_age_seconds
        self._parse = parse
        self._set: JWKSet | None = None
        self._fetched_at = float("-inf")  # when the set in hand was fetched
        self._tried_at = float("-inf")  # the last fetch, whether it succeeded or not
        self._failed = False  # the last fetch failed

    def get(self, kid: str) -> PublicKey | None:
        now = self._clock()
        fresh = self._set is not None and (
            self._max_age is None or now - self._fetched_at < self._max_age)
        if self._set is not None and fresh:
            key = self._set.get(kid)
            if key is not None or now - self._tried_at < self._min:
                return key
        elif self._failed and now - self._tried_at < self._min:
            raise Unavailable("published key set could not be fetched; tried again later",
                              reason="jwks_unavailable")
        self._tried_at, self._failed = now, True
        try:
            parsed = self._parse(self._fetch(), self._algs)
        except (Unavailable, ValueError) as exc:
            if not fresh:
                self._set = None  # past its age: never trusted again
            if isinstance(exc, Unavailable):
                raise
            raise Unavailable("published key set is malformed", reason="jwks_unavailable") from exc
        self._set, self._fetched_at, self._failed = parsed, now, False
        return parsed.get(kid)
