"""DPoP proofs (RFC 9449): making one, and the checks every receiver runs on one.

A proof is a JWT the client signs for one HTTP request with a key it holds; its header carries the
public key (``jwk``), its payload the request (``htm``, ``htu``), when it was made (``iat``), a
unique ``jti`` and, with an access token, the token's hash (``ath``). :func:`verify_proof` is the
one check, through the one verifier (:func:`~._verify.verify_jws`) under the proof policy:

* header: ``typ`` ``dpop+jwt``, ``alg`` on the allow-list (asymmetric only), a public ``jwk``
  of that algorithm and nothing else that names a key, no ``crit``;
* signature: with the header's ``jwk``. This is the one JWT whose key the token itself carries,
  by DPoP's design: what makes the key trusted is the comparison that follows, of its RFC 7638
  thumbprint with the ``cnf.jkt`` of the token (:func:`check_holder`) or with the key the
  authorization server holds for an agent. An ES256 proof is taken in either S form (replay is
  judged by ``jti`` and key, never by the proof's bytes; WebCrypto signs high-S half the time);
* claims, at the ``now`` the caller passes: ``htm`` and ``htu`` (normalised alike: :func:`htu_of`)
  equal to the request the caller names (the caller's own URL and the path as the client sent
  it, never the ``Host`` header), ``iat`` neither older than the policy's ``max_age`` nor ahead
  by more than its ``leeway``, ``ath`` equal to the token's hash when a token is presented,
  and a ``nonce`` the caller's check accepts when it asks for one.

Single use of ``jti`` is the caller's claim in the shared registry (:attr:`Proof.replay_key`,
held :meth:`ProofPolicy.replay_ttl` seconds: past that the proof is too old anyway). Refusals are
:class:`~orchestrator.errors.InvalidDPoPProof` (a missing or unaccepted nonce:
:class:`~orchestrator.errors.UseDPoPNonce`) with a specific reason.
"""

from __future__ import annotations

import base64
import hashlib
import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import DPoPRefusal, InvalidDPoPProof, OAuthError, UseDPoPNonce
from orchestrator.identity._claims import AccessClaims, is_time
from orchestrator.identity._exchange import new_jti
from orchestrator.identity._jws import KEY_HEADERS, sign
from orchestrator.identity._keys import (
    _PRIVATE_MEMBERS,
    _REQUIRED,
    PublicKey,
    SigningKey,
    _parse_public_jwk,
    thumbprint,
)
from orchestrator.identity._verify import HeaderRules, Refusals, verify_jws

DPOP_TYP = "dpop+jwt"
DPOP_ALGS = ("ES256", "EdDSA", "RS256")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class ProofPolicy:
    """What a receiver accepts: algorithms, how old a proof may be, how far ahead its ``iat``
    may run (the clock skew allowed), and its size."""

    allowed_algs: tuple[str, ...] = DPOP_ALGS
    max_age: int = 60
    leeway: int = 5
    max_bytes: int = 4096

    def replay_ttl(self) -> int:
        """How long a proof's ``jti`` must be held: as long as the proof can be accepted."""
        return self.max_age + self.leeway + 1


@dataclass(frozen=True, slots=True)
class ProofCheck:
    """The request a proof must be for: its method, the URL the receiver serves it at (its own
    configured URL plus the path), the access token it comes with (None at a token endpoint),
    and the receiver's nonce check (None: no nonce asked for)."""

    method: str
    url: str
    access_token: str | None = None
    nonce_ok: Callable[[object], bool] | None = None


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified proof: its key's thumbprint, its ``jti`` and ``iat``, and the public key."""

    jkt: str
    jti: str
    iat: int
    key: PublicKey

    @property
    def replay_key(self) -> str:
        return f"dpop:{self.jkt}:{self.jti}"


def ath_of(access_token: str) -> str:
    """RFC 9449 ``ath``: base64url (no padding) of the token's SHA-256."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


def jkt_of(key: PublicKey) -> str:
    """A public key's RFC 7638 thumbprint, as ``cnf.jkt`` names it."""
    return thumbprint(key.jwk)


def htu_of(url: str) -> str | None:
    """``url`` as proofs are compared (RFC 9449 4.3; RFC 3986 6.2.2-3): scheme and host lower
    case, no default port, query or fragment, the path :func:`_normal_path`. None: no http(s)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    path = _normal_path(parts.path)
    if scheme not in _DEFAULT_PORTS or not parts.hostname or path is None:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{path}"


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_IN_PATH = _UNRESERVED | frozenset("!$&'()*+,;=:@/")  # pchar and "/", less pct-encoded


def _normal_path(path: str) -> str | None:
    """A URL path in one spelling (RFC 3986 6.2.2.1-2): ``%xx`` upper case, decoded where it is
    an unreserved character (``%50`` is ``P``); a character a path cannot hold (space, non-ASCII;
    a raw path's undecodable byte, as ``surrogateescape``) as its UTF-8 ``%XX``. Reserved stays
    as spelled (``%2F`` is not ``/``); dot segments are kept (6.2.2.3 not applied): the server
    routes ``/a/../b`` as sent, so a proof must name that, never ``/b``. None: a bad ``%``."""
    out, i = [], 0
    while i < len(path):
        char = path[i]
        if char == "%":
            digits = path[i + 1:i + 3]
            if len(digits) != 2 or not set(digits) <= set(string.hexdigits):
                return None
            decoded = chr(int(digits, 16))
            out.append(decoded if decoded in _UNRESERVED else f"%{digits.upper()}")
            i += 3
            continue
        try:  # a lone surrogate (UnicodeEncodeError) is in no request path
            out.append(char if char in _IN_PATH else "".join(
                f"%{b:02X}" for b in char.encode("utf-8", "surrogateescape")))
        except UnicodeEncodeError:
            return None
        i += 1
    return "".join(out) or "/"


def make_proof(key: SigningKey, *, method: str, url: str, now: int,
               access_token: str | None = None, nonce: str | None = None) -> str:
    """A proof for one request, signed with ``key`` (its public members in the header)."""
    jwk = {name: key.public.jwk[name] for name in _REQUIRED[key.public.jwk["kty"]]}
    claims: dict[str, Any] = {"jti": new_jti(), "htm": method.upper(), "htu": htu_of(url) or url,
                              "iat": now}
    if access_token is not None:
        claims["ath"] = ath_of(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    return sign(claims, key, {"typ": DPOP_TYP, "jwk": jwk})


def verify_proof(proof: object, check: ProofCheck, policy: ProofPolicy, *, now: int) -> Proof:
    """The verified proof for the request ``check`` names, or the refusal (see the module)."""
    return verify_jws(proof, _ProofRules(check, policy), now=now)


def check_scheme(claims: AccessClaims, scheme: str, *, unbound_ok: bool) -> None:
    """Under which authorization scheme (lower case) a protected resource takes a token (RFC
    9449 section 7.1): a bound one (``cnf.jkt``) only as ``DPoP``, then with a proof by its key
    (:func:`check_holder`); an unbound one never as ``DPoP``, and as ``Bearer`` only where
    unbound tokens are taken (``unbound_ok``)."""
    if claims.cnf is None:
        if scheme == "dpop":
            raise DPoPRefusal("the token is not bound to a key: present it as Bearer",
                              reason="dpop_token_not_bound")
        if not unbound_ok:
            raise DPoPRefusal("this service takes only DPoP-bound tokens",
                              reason="dpop_binding_required")
    elif scheme != "dpop":
        raise DPoPRefusal("the token is bound to a key (cnf.jkt): present it with the DPoP "
                          "scheme and a proof by that key", reason="dpop_bound_token_as_bearer")


def check_holder(claims: AccessClaims, proof: Proof | None) -> None:
    """A token bound to a key (``cnf.jkt``) is usable only with a proof by that key."""
    if claims.cnf is None:
        return
    if proof is None:
        raise InvalidDPoPProof("the token is bound to a key (cnf.jkt): a DPoP proof by that "
                               "key is required", reason="dpop_proof_missing")
    if proof.jkt != claims.cnf.jkt:
        raise InvalidDPoPProof("the DPoP proof is signed by a key other than the one the token "
                               "is bound to", reason="dpop_key_mismatch")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _refuse(reason: str, message: str) -> InvalidDPoPProof:
    return InvalidDPoPProof(message, reason=reason)


_MALFORMED = ("dpop_proof_malformed", "the DPoP proof is not a compact JWT")
_KEY_OR_CRIT = ("dpop_header_refused",
                "the DPoP proof's header names a key other than its jwk, or a crit extension")
# The proof's key is its jwk (checked when the key is chosen); any other key or key location,
# and crit, are refused; typ exactly dpop+jwt (RFC 9449 4.2).
_HEADER = HeaderRules(
    typ=frozenset({DPOP_TYP}), typ_required=True, typ_exact=True, kid_max=None,
    extra_params=None, refused_keys=KEY_HEADERS - {"jwk"},
    refusals={"key_in_header": _KEY_OR_CRIT, "crit": _KEY_OR_CRIT,
              "alg": ("dpop_alg_refused", "the DPoP proof's alg is not accepted"),
              "typ": ("dpop_wrong_typ", "the DPoP proof's typ must be dpop+jwt")})
_REFUSALS = Refusals(
    not_a_string=_MALFORMED, too_large=("dpop_proof_malformed", "the DPoP proof is too large"),
    not_compact=_MALFORMED,
    undecodable_header=("dpop_proof_malformed", "the DPoP proof cannot be decoded"),
    undecodable=("dpop_proof_malformed", "the DPoP proof cannot be decoded"),
    payload_not_object=("dpop_proof_malformed", "the DPoP proof's claims are not an object"),
    unsuitable_key=("dpop_jwk_invalid", "the DPoP proof's jwk does not suit its alg"),
    malleable=("dpop_bad_signature", "the DPoP proof's signature does not verify"),
    bad_signature=("dpop_bad_signature", "the DPoP proof's signature does not verify"),
)


@dataclass(frozen=True, slots=True)
class _ProofRules:
    """The proof policy for one verification (a :class:`~._verify.Policy`)."""

    check: ProofCheck
    policy: ProofPolicy
    refusals = _REFUSALS
    key_named_by_payload = False
    accepts_high_s = True

    @property
    def max_bytes(self) -> int:
        return self.policy.max_bytes

    def refuse(self, reason: str, message: str) -> OAuthError:
        return _refuse(reason, message)

    def check_header(self, header: dict[str, Any]) -> None:
        _HEADER.check(header, self.policy.allowed_algs, _refuse)

    def choose_key(self, header: dict[str, Any], payload: dict[str, Any] | None) -> PublicKey:
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise _refuse("dpop_jwk_invalid", "the DPoP proof's header carries no jwk object")
        if _PRIVATE_MEMBERS & set(jwk):
            raise _refuse("dpop_jwk_private", "the DPoP proof's jwk holds private key material")
        try:
            members = {name: jwk[name] for name in _REQUIRED[str(jwk.get("kty"))]}
            kid = thumbprint(members)
        except (KeyError, ValueError, TypeError):
            raise _refuse("dpop_jwk_invalid", "the DPoP proof's jwk is not a public key") \
                from None
        key = _parse_public_jwk({**members, "kid": kid, "alg": header["alg"]},
                                self.policy.allowed_algs)
        if key is None:
            raise _refuse("dpop_jwk_invalid", "the DPoP proof's jwk is not a usable public key "
                                              "of its alg")
        return key

    def check_claims(self, payload: dict[str, Any], key: PublicKey, size: int, *,
                     now: int) -> Proof:
        check, policy = self.check, self.policy
        jti, htm, htu, iat = (payload.get(n) for n in ("jti", "htm", "htu", "iat"))
        if not isinstance(jti, str) or not 8 <= len(jti) <= 128 or not isinstance(htm, str) \
                or not isinstance(htu, str) or not is_time(iat):
            raise _refuse("dpop_claims_invalid", "the DPoP proof needs jti (8-128 characters), "
                                                 "htm, htu and a numeric iat")
        if htm != check.method.upper():
            raise _refuse("dpop_htm_mismatch", "the DPoP proof is for another HTTP method")
        expected = htu_of(check.url)
        if expected is None or htu_of(htu) != expected:
            raise _refuse("dpop_htu_mismatch", "the DPoP proof is for another URL")
        if iat > now + policy.leeway:
            raise _refuse("dpop_iat_in_future", "the DPoP proof was issued in the future")
        if iat < now - policy.max_age:
            raise _refuse("dpop_proof_too_old",
                          f"the DPoP proof is older than {policy.max_age}s")
        if check.access_token is not None and payload.get("ath") != ath_of(check.access_token):
            raise _refuse("dpop_ath_mismatch" if "ath" in payload else "dpop_ath_missing",
                          "the DPoP proof's ath is not the hash of the access token presented")
        if check.nonce_ok is not None and not check.nonce_ok(payload.get("nonce")):
            raise UseDPoPNonce("the authorization server requires a DPoP proof with the nonce "
                               "it provides (DPoP-Nonce)",
                               reason="dpop_nonce_missing" if "nonce" not in payload
                               else "dpop_nonce_stale")
        return Proof(jkt=key.kid, jti=jti, iat=math.floor(iat), key=key)
