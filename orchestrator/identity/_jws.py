"""Compact JWS (RFC 7515), the codec under the one verifier (:mod:`._verify`); it decides nothing.

* :func:`read_unverified` is the one unverified peek: the JSON a segment holds, before any check.
  :func:`unverified_header` and :func:`unverified_payload` read through it; callers decide
  whether to trust what it says (the verifier trusts nothing of it but the ``kid``'s name).
* :func:`decode` decodes a token as PyJWT's decoder does: base64url alphabet, no padding,
  canonical encoding, and the header parameters it cannot process (a non-string ``kid``, a
  ``b64`` false, a ``crit`` naming an extension it does not support) refused.
* :func:`signature_ok` checks the signature with a key the *caller* chose, through PyJWT's
  algorithm objects over pyca/cryptography, refusing an ES256 signature in its high-S form
  (:class:`MalleableSignature`); :func:`sign` writes a token as ``jwt.encode`` would (sorted
  header, compact JSON), its ES256 signature always low-S.
* :data:`KEY_HEADERS` is the one list of header parameters that carry a key or say where one is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import Algorithm, ECAlgorithm, get_default_algorithms
from jwt.api_jws import PyJWS
from jwt.exceptions import InvalidKeyError, PyJWTError
from jwt.warnings import InsecureKeyLengthWarning

from orchestrator.identity._keys import PublicKey, SigningKey

SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# Header parameters that carry a key or point at one (RFC 7515 4.1.3-4.1.8): never followed.
KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})
_ALGORITHMS: dict[str, Algorithm] = {
    name: alg for name, alg in get_default_algorithms().items()
    if name in ("ES256", "RS256", "EdDSA")
}


# The order of P-256's base point: an ES256 signature (r, s) has the twin (r, n - s), which
# verifies as well. Only the low-S one (s <= n/2) is accepted, and :func:`sign` writes that one.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF = P256_ORDER // 2


class MalformedJWS(ValueError):
    """Not a compact JWS this module can decode (never says which byte, never echoes it)."""


class MalleableSignature(ValueError):
    """An ES256 signature in its high-S form: the twin of a low-S one, so a second encoding."""


@dataclass(frozen=True, slots=True)
class Segments:
    """The decoded segments of a compact JWS. Nothing here is verified."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


def split(token: str) -> list[str] | None:
    """The three non-empty base64url segments of ``token``, or None."""
    parts = token.split(".")
    if len(parts) != 3 or not all(SEGMENT.fullmatch(p) for p in parts):
        return None
    return parts


# -- the one unverified peek ---------------------------------------------------------------------

def read_unverified(segment: str) -> object:
    """The JSON ``segment`` holds, decoded leniently and WITHOUT any check: never for a decision
    on its own. Raises :class:`MalformedJWS`."""
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError, TypeError) as exc:  # binascii.Error is a ValueError
        raise MalformedJWS("segment cannot be decoded") from exc


def unverified_header(header_segment: str) -> dict[str, Any]:
    """The header as its segment says, before any check. Raises :class:`MalformedJWS`."""
    try:
        header = read_unverified(header_segment)
    except MalformedJWS as exc:
        raise MalformedJWS("header cannot be decoded") from exc
    if not isinstance(header, dict):
        raise MalformedJWS("header is not a JSON object")
    return header


def unverified_payload(token: object, *, max_bytes: int) -> dict[str, Any] | None:
    """The claims ``token``'s payload says, read WITHOUT verifying anything (to address a query
    before verification, or to explain a refusal); None for anything that is not a JSON object
    in a three-segment token of at most ``max_bytes``. Never raises."""
    if not isinstance(token, str) or len(token) > max_bytes:
        return None
    parts = token.split(".")  # the verifier checks the segments' alphabet; this reads one
    if len(parts) != 3:
        return None
    try:
        payload = read_unverified(parts[1])
    except MalformedJWS:
        return None
    return payload if isinstance(payload, dict) else None


# -- strict decoding -----------------------------------------------------------------------------

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# A segment whose length is 2 or 3 mod 4 ends in a character that carries 4 or 2 bits of
# padding; the canonical encoding (the one re-encoding the bytes gives back) has them zero.
_CANONICAL_LAST = {
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b1111 == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b11 == 0),
}


def _strict_b64decode(segment: str) -> bytes:
    """PyJWT's rule for a segment: base64url alphabet (the caller matched :data:`SEGMENT`), a
    length that can encode whole bytes, and the canonical encoding of what it decodes to (the
    unused low bits of the last character are zero)."""
    tail = len(segment) % 4
    if tail == 1:
        raise MalformedJWS("segment length is not a base64url length")
    if tail and segment[-1] not in _CANONICAL_LAST[tail]:
        raise MalformedJWS("segment is not in canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedJWS("segment is not base64url") from exc


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


def decode(parts: list[str], header: dict[str, Any]) -> Segments:
    """All three segments (from :func:`split`) decoded strictly. ``header`` is what
    :func:`unverified_header` read from the first: once that segment is found canonical, it
    decodes to the same bytes. Raises :class:`MalformedJWS`."""
    if not _decodable(header):
        raise MalformedJWS("header parameters cannot be processed")
    _strict_b64decode(parts[0])
    payload = _strict_b64decode(parts[1])
    signature = _strict_b64decode(parts[2])
    return Segments(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


# -- signatures ----------------------------------------------------------------------------------

def signature_ok(segments: Segments, key: PublicKey) -> bool:
    """Whether ``key`` (chosen by the caller, its algorithm already matched to the header's)
    signed ``segments``. Raises :class:`MalformedJWS` if the key does not suit its algorithm,
    :class:`MalleableSignature` for an ES256 signature that verifies but is in its high-S form."""
    algorithm = _ALGORITHMS.get(key.alg)
    if algorithm is None:
        raise MalformedJWS("unsupported algorithm")
    try:
        prepared = algorithm.prepare_key(key.key)
    except InvalidKeyError as exc:
        raise MalformedJWS("key does not suit its algorithm") from exc
    _warn_short_key(algorithm, prepared)
    valid = bool(algorithm.verify(segments.signing_input, prepared, segments.signature))
    if valid and key.alg == "ES256" and _high_s(segments.signature):
        raise MalleableSignature("ES256 signature is not in its low-S form")
    return valid


def _high_s(signature: bytes) -> bool:
    """Whether a raw ES256 ``r || s`` has ``s`` above n/2 (a wrong length is left to verify)."""
    return len(signature) == 64 and int.from_bytes(signature[32:], "big") > _P256_HALF


def canonical(alg: str, signature: bytes) -> bytes:
    """The one accepted encoding of a raw signature: for ES256 its low-S form (``(r, n - s)``
    when ``s`` is above n/2); any other algorithm's signature as it is."""
    if alg != "ES256" or not _high_s(signature):
        return signature
    s = P256_ORDER - int.from_bytes(signature[32:], "big")
    return signature[:32] + s.to_bytes(32, "big")


def _warn_short_key(algorithm: Algorithm, key: Any) -> None:
    message = algorithm.check_key_length(key)
    if message:
        warnings.warn(message, InsecureKeyLengthWarning, stacklevel=3)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(payload: dict[str, Any], key: SigningKey, headers: dict[str, Any]) -> str:
    """A compact JWS of ``payload`` signed with ``key``, as ``jwt.encode(payload, key.private,
    algorithm=key.alg, headers=headers)`` writes it (``typ`` defaults to ``JWT``)."""
    algorithm = _ALGORITHMS[key.alg]
    header = {"typ": "JWT", "alg": key.alg, **headers}
    signing_input = (
        _b64encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        + "."
        + _b64encode(json.dumps(payload, separators=(",", ":")).encode())
    )
    prepared = algorithm.prepare_key(key.private)
    _warn_short_key(algorithm, prepared)
    signature = canonical(key.alg, algorithm.sign(signing_input.encode("ascii"), prepared))
    return f"{signing_input}.{_b64encode(signature)}"


# -- the same codec through PyJWT's JWS layer (measured against the one above: bench/exchange) --

class _LowSES256(ECAlgorithm):
    """PyJWT's ES256 that signs only low-S and refuses a high-S signature that verifies."""

    def sign(self, msg: bytes, key: Any) -> bytes:
        return canonical("ES256", super().sign(msg, key))

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        valid = super().verify(msg, key, sig)
        if valid and _high_s(sig):
            raise MalleableSignature("ES256 signature is not in its low-S form")
        return valid


_PYJWS = PyJWS(algorithms=["RS256", "EdDSA"])
_PYJWS.register_algorithm("ES256", _LowSES256(ECAlgorithm.SHA256))


def library_decode(parts: list[str], header: dict[str, Any]) -> Segments:
    """:func:`decode` by PyJWT's ``decode_complete`` (no signature check: :func:`signature_ok`)."""
    try:
        decoded = _PYJWS.decode_complete(".".join(parts), options={"verify_signature": False})
    except PyJWTError as exc:
        raise MalformedJWS("token cannot be decoded") from exc
    return Segments(decoded["header"], decoded["payload"],
                    f"{parts[0]}.{parts[1]}".encode("ascii"), decoded["signature"])


def library_sign(payload: dict[str, Any], key: SigningKey, headers: dict[str, Any]) -> str:
    """:func:`sign` by PyJWT's ``PyJWS.encode``."""
    return _PYJWS.encode(json.dumps(payload, separators=(",", ":")).encode(), key.private,
                         algorithm=key.alg, headers=headers)
