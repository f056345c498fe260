"""Compact JWS (RFC 7515), the codec under the one verifier (:mod:`._verify`); it decides nothing.

The codec is PyJWT's JWS layer (``PyJWS``): decoding, encoding and the signature algorithms over
pyca/cryptography. This module adds what the project requires around it:

* :func:`read_unverified` is the one unverified peek: the JSON a segment holds, before any check.
  :func:`unverified_header` and :func:`unverified_payload` read through it; callers decide
  whether to trust what it says (the verifier trusts nothing of it but the ``kid``'s name).
* :func:`decode` decodes a token strictly (PyJWT's ``decode_complete`` without its signature
  check): base64url alphabet, canonical encoding, and the header parameters PyJWT cannot
  process (a non-string ``kid``, a ``b64`` false, a ``crit`` naming an extension it does not
  support) refused. :func:`split` refuses padding and empty segments before it.
* :func:`signature_ok` checks the signature with a key the *caller* chose, with PyJWT's
  algorithm objects; ES256 is :class:`_LowSES256`, which refuses a high-S signature
  (:class:`MalleableSignature`) and signs only low-S, so :func:`sign` (``PyJWS.encode``) writes
  one encoding per token.
* :data:`KEY_HEADERS` is the one list of header parameters that carry a key or say where one is.

Why PyJWT and not a hand-written codec: see docs/identity.md ("One verifier, PyJWT's codec").
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import ECAlgorithm
from jwt.api_jws import PyJWS
from jwt.exceptions import InvalidKeyError, PyJWTError
from jwt.warnings import InsecureKeyLengthWarning

from orchestrator.identity._keys import PublicKey, SigningKey

SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# Header parameters that carry a key or point at one (RFC 7515 4.1.3-4.1.8): never followed.
KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})


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


# -- the codec: PyJWT's JWS layer ---------------------------------------------------------------

def _high_s(signature: bytes) -> bool:
    """Whether a raw ES256 ``r || s`` has ``s`` above n/2 (a wrong length is left to verify)."""
    return len(signature) == 64 and int.from_bytes(signature[32:], "big") > _P256_HALF


def canonical(alg: str, signature: bytes) -> bytes:
    """The one accepted encoding of a raw signature: for ES256 its low-S form (``(r, n - s)``
    when ``s`` is above n/2); any other algorithm's signature as it is."""
    if alg != "ES256" or not _high_s(signature):
        return signature
    s = int.from_bytes(signature[32:], "big")
    if s >= P256_ORDER:  # no signature at all (s is below n): verifying it as it is refuses it
        return signature
    return signature[:32] + (P256_ORDER - s).to_bytes(32, "big")


class _LowSES256(ECAlgorithm):
    """PyJWT's ES256, signing only low-S and refusing a high-S signature that verifies."""

    def sign(self, msg: bytes, key: Any) -> bytes:
        return canonical("ES256", super().sign(msg, key))

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        valid = bool(super().verify(msg, key, sig))
        if valid and _high_s(sig):
            raise MalleableSignature("ES256 signature is not in its low-S form")
        return valid


_PYJWS = PyJWS(algorithms=["RS256", "EdDSA"])
_PYJWS.register_algorithm("ES256", _LowSES256(ECAlgorithm.SHA256))


def decode(parts: list[str]) -> Segments:
    """All three segments (from :func:`split`) decoded strictly by PyJWT's ``decode_complete``,
    without its signature check (that is :func:`signature_ok`'s, with the caller's key).
    Raises :class:`MalformedJWS`."""
    try:
        decoded = _PYJWS.decode_complete(".".join(parts), options={"verify_signature": False})
    except PyJWTError as exc:
        raise MalformedJWS("token cannot be decoded") from exc
    return Segments(decoded["header"], decoded["payload"],
                    f"{parts[0]}.{parts[1]}".encode("ascii"), decoded["signature"])


def signature_ok(segments: Segments, key: PublicKey) -> bool:
    """Whether ``key`` (chosen by the caller, its algorithm already matched to the header's)
    signed ``segments``. Raises :class:`MalformedJWS` if the key does not suit its algorithm,
    :class:`MalleableSignature` for an ES256 signature that verifies but is in its high-S form."""
    try:
        algorithm = _PYJWS.get_algorithm_by_name(key.alg)
        prepared = algorithm.prepare_key(key.key)
    except (NotImplementedError, InvalidKeyError) as exc:
        raise MalformedJWS("key does not suit its algorithm") from exc
    message = algorithm.check_key_length(prepared)
    if message:
        warnings.warn(message, InsecureKeyLengthWarning, stacklevel=2)
    return bool(algorithm.verify(segments.signing_input, prepared, segments.signature))


def sign(payload: dict[str, Any], key: SigningKey, headers: dict[str, Any]) -> str:
    """A compact JWS of ``payload`` signed with ``key``, as ``jwt.encode(payload, key.private,
    algorithm=key.alg, headers=headers)`` writes it (sorted header, ``typ`` defaulting to
    ``JWT``, compact JSON), its ES256 signature low-S."""
    return _PYJWS.encode(json.dumps(payload, separators=(",", ":")).encode(), key.private,
                         algorithm=key.alg, headers=headers)


def sign_bytes(payload: bytes, key: SigningKey, headers: dict[str, Any]) -> str:
    """A compact JWS of exactly ``payload`` (a canonical form the caller made), as
    :func:`sign` writes it."""
    return _PYJWS.encode(payload, key.private, algorithm=key.alg, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
