"""Asymmetric signing keys: generation, RFC 7638 thumbprints as ``kid``, JWKS.

Keys here are values: where private keys are kept (files in the state directory, owner-only)
is the key store's business (:mod:`orchestrator.keystore`). The verifying side is a
:class:`JWKSet` built from published JWKS only (never from anything a token says about its own
key).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from orchestrator.errors import ConfigError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKeyObj = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_KTY = {"ES256": "EC", "RS256": "RSA", "EdDSA": "OKP"}
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ALGORITHM: dict[str, Any] = {
    "ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ConfigError(f"unsupported signing algorithm {alg!r}")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    kty = jwk.get("kty")
    if kty not in _REQUIRED:
        raise ValueError(f"unsupported kty {kty!r}")
    members = {name: jwk[name] for name in _REQUIRED[kty]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class PublicKey:
    kid: str
    alg: str
    key: PublicKeyObj
    jwk: dict[str, Any]


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey
    public: PublicKey


def public_key_of(private: PrivateKey, alg: str) -> PublicKey:
    public = private.public_key()
    jwk: dict[str, Any] = _ALGORITHM[alg].to_jwk(public, as_dict=True)
    kid = thumbprint(jwk)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return PublicKey(kid=kid, alg=alg, key=public, jwk=jwk)


def signing_key_of(private: PrivateKey, alg: str) -> SigningKey:
    public = public_key_of(private, alg)
    return SigningKey(kid=public.kid, alg=alg, private=private, public=public)


def alg_of(private: PrivateKey) -> str:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return "ES256"
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    return "EdDSA"


class JWKSet:
    """Public keys by ``kid``, parsed from a JWKS document; only allowed algorithms are kept."""

    def __init__(self, keys: dict[str, PublicKey]) -> None:
        self._keys = keys

    @classmethod
    def from_dict(cls, document: object, allowed_algs: tuple[str, ...]) -> JWKSet:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            # ValueError, not TypeError: callers catch ValueError for every malformed set
            raise ValueError("a JWKS is an object with a 'keys' array")  # noqa: TRY004
        keys: dict[str, PublicKey] = {}
        for jwk in document["keys"]:
            key = _parse_public_jwk(jwk, allowed_algs)
            if key is not None:
                keys[key.kid] = key
        return cls(keys)

    @classmethod
    def of(cls, keys: list[PublicKey]) -> JWKSet:
        return cls({key.kid: key for key in keys})

    def get(self, kid: str) -> PublicKey | None:
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return list(self._keys)

    def to_dict(self) -> dict[str, Any]:
        return {"keys": [key.jwk for key in self._keys.values()]}


class NotAPublicKeySet(ValueError):
    """A document offered for registration is not a set of public signing keys; the message
    says why in one line (never echoing key material)."""


class PrivateKeyMaterial(NotAPublicKeySet):
    """A document offered for registration holds private key material: refused outright."""


def public_keys_to_register(document: object,
                            allowed_algs: tuple[str, ...]) -> list[PublicKey]:
    """The public signing keys of a JWK Set offered for a client's registration, all or none.

    Strict where :meth:`JWKSet.from_dict` skips: every key must be usable, or the whole set is
    refused with the first problem. A key without ``kid`` gets its RFC 7638 thumbprint; a ``kid``
    that is not the thumbprint is refused (it would let two different keys share a name). Any
    private member (``d``, ``p``, ``k`` ...) refuses the set as :class:`PrivateKeyMaterial`.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise NotAPublicKeySet('a JWK Set is a JSON object with a "keys" array')
    if not document["keys"]:
        raise NotAPublicKeySet("the JWK Set has no keys")
    keys: list[PublicKey] = []
    for index, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict):
            raise NotAPublicKeySet(f"key {index} is not a JSON object")
        private = sorted(_PRIVATE_MEMBERS & set(jwk))
        if private:
            raise PrivateKeyMaterial(f"key {index} holds private key material "
                                     f"({', '.join(private)})")
        alg = jwk.get("alg")
        if alg not in allowed_algs:
            raise NotAPublicKeySet(f"key {index}: alg must be one of {', '.join(allowed_algs)}")
        try:
            expected = thumbprint(jwk)
        except (KeyError, ValueError, TypeError):
            raise NotAPublicKeySet(f"key {index} is not a valid {alg} public key") from None
        if jwk.get("kid", expected) != expected:
            raise NotAPublicKeySet(f"key {index}: kid must be its RFC 7638 thumbprint {expected}")
        members = {name: jwk[name] for name in _REQUIRED[str(jwk["kty"])]}
        key = _parse_public_jwk({**members, "kid": expected, "alg": alg, "use": jwk.get("use",
                                                                                 "sig")},
                                allowed_algs)
        if key is None:
            raise NotAPublicKeySet(f"key {index} is not a valid {alg} public signing key")
        keys.append(key)
    return keys


def _parse_public_jwk(jwk: object, allowed_algs: tuple[str, ...]) -> PublicKey | None:
    """A usable signing key from one JWK, or None for a key we must not use."""
    if not isinstance(jwk, dict):
        return None
    alg, kty = jwk.get("alg"), jwk.get("kty")
    if alg not in allowed_algs or _KTY.get(alg) != kty or _PRIVATE_MEMBERS & set(jwk):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        key = _ALGORITHM[alg].from_jwk(jwk)
        expected = thumbprint(jwk)
    except Exception:  # noqa: BLE001 - a malformed published key is skipped, never trusted
        return None
    if jwk.get("kid") != expected:
        return None
    if alg == "ES256" and (not isinstance(key, ec.EllipticCurvePublicKey)
                           or key.curve.name != "secp256r1"):
        return None
    if alg == "EdDSA" and not isinstance(key, ed25519.Ed25519PublicKey):
        return None
    if alg == "RS256" and (not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048):
        return None
    return PublicKey(kid=expected, alg=alg, key=key, jwk=dict(jwk))


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """``key`` as a JWK written afresh from its public key object: whatever its stored JWK
    holds, nothing but public members (and ``kid``, ``alg``, ``use``) is ever in it."""
    jwk: dict[str, Any] = _ALGORITHM[key.alg].to_jwk(key.key, as_dict=True)
    if _PRIVATE_MEMBERS & set(jwk):  # a public key object writes none: refuse, never serve
        raise PrivateKeyMaterial("a public key wrote private members")
    jwk.update({"kid": key.kid, "alg": key.alg, "use": "sig"})
    return jwk
