"""An identity provider's published keys (its JWKS) as a :class:`~._keys.JWKSet`.

Unlike our own keys, a vendor names its keys as it likes (Keycloak, Auth0, Okta: random ids;
Entra: a certificate thumbprint) and may leave out ``alg`` (Entra does): a key without one is
usable with the one algorithm its type allows among the provider's configured algorithms. A key
whose ``alg`` is not configured, meant for encryption, holding private members or too weak is
skipped, never trusted.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from orchestrator.identity._keys import JWKSet, PublicKey

_ALG_OF_KTY = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CODEC: dict[str, Any] = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}


def provider_key_set(document: object, algorithms: tuple[str, ...]) -> JWKSet:
    """The usable signing keys of a provider's JWKS; ValueError if it is not a JWKS."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' array")  # noqa: TRY004
    keys = [key for jwk in document["keys"] if (key := _key(jwk, algorithms)) is not None]
    return JWKSet.of(keys)


def _key(jwk: object, algorithms: tuple[str, ...]) -> PublicKey | None:
    if not isinstance(jwk, dict) or _PRIVATE & set(jwk) or jwk.get("use", "sig") != "sig":
        return None
    kid, kty = jwk.get("kid"), jwk.get("kty")
    alg = jwk.get("alg", _ALG_OF_KTY.get(str(kty)))
    if not isinstance(kid, str) or not 0 < len(kid) <= 256 or alg not in algorithms:
        return None
    if _ALG_OF_KTY.get(str(kty)) != alg:
        return None
    try:
        key = _CODEC[alg].from_jwk(jwk)
    except Exception:  # noqa: BLE001 - a malformed published key is skipped, never trusted
        return None
    usable = ((alg == "RS256" and isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)
              or (alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey)
                  and key.curve.name == "secp256r1")
              or (alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey)))
    return PublicKey(kid=kid, alg=alg, key=key, jwk=dict(jwk)) if usable else None
