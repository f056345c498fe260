"""Compact JWS (RFC 7515), the dangerous layer under the verifier and the assertion check.

This module decodes and signs; it decides nothing. :func:`unverified_header` reads a header
before any check (callers decide whether to trust it), :func:`decode_segments` decodes the
three segments as strictly as PyJWT's own decoder (base64url alphabet, no padding, canonical
encoding), :func:`signature_ok` checks the signature with a key the *caller* chose, through
PyJWT's algorithm objects over pyca/cryptography, refusing an ES256 signature in its high-S
form (:class:`MalleableSignature`), and :func:`sign` produces a token as ``jwt.encode`` would
(sorted header, compact JSON), its ES256 signature always low-S.

Why not ``jwt.decode``: every decode re-splits and re-decodes the token, checking the base64url
alphabet one character at a time in Python, and the verifier and the assertion check each
needed the token decoded more than once. Here a token is split and decoded once.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.exceptions import InvalidKeyError
from jwt.warnings import InsecureKeyLengthWarning

from orchestrator.identity._keys import PublicKey, SigningKey

SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
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


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


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
        return _b64decode(segment)
    except (binascii.Error, ValueError) as exc:
        raise MalformedJWS("segment is not base64url") from exc


def unverified_header(header_segment: str) -> dict[str, Any]:
    """The header as its segment says, before any check. Raises :class:`MalformedJWS`."""
    try:
        header = json.loads(_b64decode(header_segment))
    except (ValueError, RecursionError, TypeError) as exc:
        raise MalformedJWS("header cannot be decoded") from exc
    if not isinstance(header, dict):
        raise MalformedJWS("header is not a JSON object")
    return header


def decode_segments(parts: list[str], header: dict[str, Any]) -> Segments:
    """All three segments decoded strictly. ``header`` is what :func:`unverified_header` read
    from the first: once that segment is found canonical, it decodes to the same bytes."""
    _strict_b64decode(parts[0])
    payload = _strict_b64decode(parts[1])
    signature = _strict_b64decode(parts[2])
    return Segments(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


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
