"""The one verifier: every signed JWT this project accepts (access tokens, client and grant
assertions) passes through :func:`verify_jws`, under a policy that says what its kind requires.

The checks, in order: the token's size and shape (three base64url segments); its header, read
through the one unverified peek (:func:`~._jws.unverified_header`) and judged by the policy; the
key, chosen by the policy from keys the caller holds (by the header's ``kid`` for an access token;
by the payload's issuer for an assertion, RFC 7523, so that policy has the payload decoded
first); the signature with that key, its algorithm the key's own (ES256 only in its low-S
form); then the claims, by the policy, at the ``now`` the caller gives. Nothing reads an
algorithm, a key or a key location from the token: the policy's allow-list and the caller's
keys decide. Every refusal is the policy's error with the policy's reason for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from orchestrator.errors import InfraBotError
from orchestrator.identity import _jws
from orchestrator.identity._keys import PublicKey

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Refusals:
    """The ``(reason, message)`` a policy gives each refusal the verifier itself makes."""

    not_a_string: tuple[str, str]
    too_large: tuple[str, str]
    not_compact: tuple[str, str]
    undecodable: tuple[str, str]
    unsuitable_key: tuple[str, str]
    malleable: tuple[str, str]
    bad_signature: tuple[str, str]
    payload_not_object: tuple[str, str]
    # None: the peek's own words ("header cannot be decoded", "header is not a JSON object")
    undecodable_header: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """The JOSE header checks the kinds share, in one order: no key or key location
    (``refused_keys``) and no ``crit``; no parameter beyond ``alg``, ``typ``, ``kid`` and
    ``extra_params`` (None: any); ``alg`` on the caller's allow-list; ``typ`` one of ``typ``
    (compared case-insensitively unless ``typ_exact``; absent only if not ``typ_required``); a
    ``kid`` of at most
    ``kid_max`` characters (None: none needed). ``refusals`` gives each check
    (``key_in_header``, ``crit``, ``unexpected_header``, ``alg``, ``typ``, ``kid``) the kind's
    ``(reason, message)``."""

    typ: frozenset[str]
    typ_required: bool
    kid_max: int | None
    extra_params: frozenset[str] | None
    refusals: Mapping[str, tuple[str, str]]
    refused_keys: frozenset[str] = _jws.KEY_HEADERS
    typ_exact: bool = False

    def check(self, header: dict[str, Any], allowed_algs: tuple[str, ...],
              refuse: Callable[[str, str], InfraBotError]) -> None:
        refusals = self.refusals
        if self.refused_keys & set(header):
            raise refuse(*refusals["key_in_header"])
        if "crit" in header:
            raise refuse(*refusals["crit"])
        if self.extra_params is not None \
                and set(header) - {"alg", "typ", "kid"} - self.extra_params:
            raise refuse(*refusals["unexpected_header"])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in allowed_algs:
            raise refuse(*refusals["alg"])
        typ = header.get("typ")
        if (typ is not None or self.typ_required) and (
                not isinstance(typ, str)
                or (typ if self.typ_exact else typ.lower()) not in self.typ):
            raise refuse(*refusals["typ"])
        kid = header.get("kid")
        if self.kid_max is not None and (not isinstance(kid, str)
                                         or not 0 < len(kid) <= self.kid_max):
            raise refuse(*refusals["kid"])


class Policy(Protocol[T_co]):
    """What one kind of signed JWT requires beyond the checks every kind passes."""

    @property
    def max_bytes(self) -> int: ...

    @property
    def refusals(self) -> Refusals: ...

    @property
    def key_named_by_payload(self) -> bool:
        """Whether the signer is named in the payload (so it is decoded before the key is
        chosen) rather than by the header's ``kid`` alone."""
        ...

    @property
    def accepts_high_s(self) -> bool:
        """Whether an ES256 signature is taken in either S form (DPoP proofs, whose replay is
        judged by ``jti`` and key, not by their bytes); otherwise only low-S."""
        ...

    def refuse(self, reason: str, message: str) -> InfraBotError: ...

    def check_header(self, header: dict[str, Any]) -> None:
        """Raise the refusal a header not acceptable for this kind deserves."""
        ...

    def choose_key(self, header: dict[str, Any], payload: dict[str, Any] | None) -> PublicKey:
        """The caller's key this token must be signed with (``payload`` unverified, given only
        when :attr:`key_named_by_payload`), or raise."""
        ...

    def check_claims(self, payload: dict[str, Any], key: PublicKey, size: int, *,
                     now: int) -> T_co:
        """The verified claims, judged at ``now``, as this kind returns them; or raise."""
        ...


def verify_jws(token: object, policy: Policy[T_co], *, now: int) -> T_co:
    """Verify ``token`` under ``policy`` at ``now`` (see the module's docstring)."""
    refusals = policy.refusals

    def refuse(pair: tuple[str, str]) -> InfraBotError:
        return policy.refuse(*pair)

    if not isinstance(token, str) or not token:
        raise refuse(refusals.not_a_string)
    if len(token) > policy.max_bytes:
        raise refuse(refusals.too_large)
    parts = _jws.split(token)
    if parts is None:
        raise refuse(refusals.not_compact)
    try:
        header = _jws.unverified_header(parts[0])
    except _jws.MalformedJWS as exc:
        raise refuse(refusals.undecodable_header or ("malformed", str(exc))) from exc
    payload: dict[str, Any] | None = None
    if policy.key_named_by_payload:
        segments = _decoded(parts, policy)
        payload = _payload(segments, policy, refusals.undecodable)
        policy.check_header(header)
        key = policy.choose_key(header, payload)
    else:
        policy.check_header(header)
        key = policy.choose_key(header, None)
        segments = _decoded(parts, policy)
    _check_signature(segments, key, policy)
    if payload is None:
        payload = _payload(segments, policy, refusals.payload_not_object)
    return policy.check_claims(payload, key, len(token), now=now)


def _decoded(parts: list[str], policy: Policy[Any]) -> _jws.Segments:
    try:
        return _jws.decode(parts)
    except _jws.MalformedJWS as exc:
        raise policy.refuse(*policy.refusals.undecodable) from exc


def _payload(segments: _jws.Segments, policy: Policy[Any],
             not_object: tuple[str, str]) -> dict[str, Any]:
    try:
        payload = json.loads(segments.payload)
    except (ValueError, RecursionError, TypeError) as exc:
        raise policy.refuse(*policy.refusals.undecodable) from exc
    if not isinstance(payload, dict):
        raise policy.refuse(*not_object)
    return payload


def _check_signature(segments: _jws.Segments, key: PublicKey, policy: Policy[Any]) -> None:
    refusals = policy.refusals
    if policy.accepts_high_s:
        segments = replace(segments, signature=_jws.canonical(key.alg, segments.signature))
    try:
        valid = _jws.signature_ok(segments, key)
    except _jws.MalformedJWS as exc:
        raise policy.refuse(*refusals.unsuitable_key) from exc
    except _jws.MalleableSignature as exc:
        raise policy.refuse(*refusals.malleable) from exc
    if not valid:
        raise policy.refuse(*refusals.bad_signature)
