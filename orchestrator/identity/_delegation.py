"""Delegator-confirmed hand-offs: the delegation record an agent signs when it hands off, and
the authorization server's rules for it (pure: no I/O, the clock passed in).

The delegator sends its record with the exchange as a compact JWS (``typ``
``delegation+jwt``) whose payload is the record's canonical form (:func:`canonical`, RFC 8785
JCS: the members sorted, no whitespace). The server verifies it with the keys registered for
the authenticated client (:func:`verify_record`), checks it against the exchange
(:func:`check_record`), attests it with its own key (:func:`attest`) and appends it to the
``delegation_chain`` claim (:func:`extend_chain`). In the claim both signatures are detached
(RFC 7515 appendix F), as draft-liu-oauth-chain-delegation-00 has them, so a verifier
rebuilds the signed bytes from the record's members. docs/delegation-chain.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget
from orchestrator.identity import _jws
from orchestrator.identity._claims import AccessClaims, DelegationRecord
from orchestrator.identity._keys import PublicKey, SigningKey
from orchestrator.identity._verify import HeaderRules, Refusals, verify_jws

RECORD_TYP = "delegation+jwt"
ATTESTATION_TYP = "delegation-attestation+jwt"
SIGNED_MEMBERS = ("delegator_id", "delegatee_id", "delegation_timestamp", "run_id",
                  "parent_jti", "scope")
# How far a record's time may be from the server's when it is sent (the draft recommends 5 min).
MAX_RECORD_AGE_SECONDS = 300
MAX_RECORD_BYTES = 4096


def canonical(record: DelegationRecord) -> bytes:
    """The bytes both signatures cover: the signed members in RFC 8785 form (sorted members,
    no whitespace; the values are ids, a scope string and an integer, which JSON writes the
    way JCS does)."""
    members = {name: getattr(record, name) for name in SIGNED_MEMBERS}
    return json.dumps(members, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def make_record(key: SigningKey, *, delegator: str, delegatee: str, subject: Mapping[str, Any],
                scope: str | None, now: int) -> str:
    """The record a delegator sends with its hand-off: from its subject token's (unverified:
    the server checks them) ``jti`` and run, handing off ``scope`` (all it holds if None)."""
    ctx = subject.get("ctx")
    record = DelegationRecord(
        delegator_id=delegator, delegatee_id=delegatee, delegation_timestamp=now,
        run_id=str(ctx.get("run_id") if isinstance(ctx, dict) else ""),
        parent_jti=str(subject.get("jti")), scope=scope or str(subject.get("scope")))
    return _jws.sign_bytes(canonical(record), key, {"typ": RECORD_TYP, "kid": key.kid})


def detached(compact: str) -> str:
    """A compact JWS with its payload left out (RFC 7515 appendix F)."""
    header, _, signature = compact.split(".")
    return f"{header}..{signature}"


def delegator_signature(record: DelegationRecord, key: SigningKey) -> str:
    """A delegator's detached signature of ``record`` (the form it has in the claim)."""
    return detached(_jws.sign_bytes(canonical(record), key,
                                    {"typ": RECORD_TYP, "kid": key.kid}))


def attest(record: DelegationRecord, key: SigningKey) -> DelegationRecord:
    """The record with the authorization server's attestation (``as_signature``)."""
    signature = _jws.sign_bytes(canonical(record), key,
                                {"typ": ATTESTATION_TYP, "kid": key.kid})
    return record.model_copy(update={"as_signature": detached(signature)})


def _bad_record(reason: str, message: str) -> InvalidRequest | InvalidGrant:
    if reason in ("delegation_record_malformed", "delegation_record_not_canonical"):
        return InvalidRequest(message, reason=reason)
    return InvalidGrant(message, reason=reason)


_REFUSALS = Refusals(
    not_a_string=("delegation_record_malformed", "delegation_record must be a compact JWS"),
    too_large=("delegation_record_malformed", "delegation_record is too large"),
    not_compact=("delegation_record_malformed", "delegation_record must be a compact JWS"),
    undecodable_header=("delegation_record_malformed", "delegation_record cannot be decoded"),
    undecodable=("delegation_record_malformed", "delegation_record cannot be decoded"),
    payload_not_object=("delegation_record_malformed", "delegation_record is not an object"),
    unsuitable_key=("delegation_signature_invalid", ("delegation_record signature does not "
                                                    "verify")),
    malleable=("delegation_signature_invalid", ("delegation_record ES256 signature must be "
                                               "low-S")),
    bad_signature=("delegation_signature_invalid", ("delegation_record signature does not "
                                                   "verify with the client's registered key")),
)
_MALFORMED = "delegation_record_malformed"
_HEADER = HeaderRules(
    typ=frozenset({RECORD_TYP}), typ_required=True, kid_max=128, extra_params=frozenset(),
    refusals={
        "key_in_header": (_MALFORMED, "delegation_record header names a key or key location"),
        "crit": (_MALFORMED, "delegation_record header has a crit extension"),
        "unexpected_header": (_MALFORMED, ("delegation_record header has parameters other "
                                          "than alg, typ, kid")),
        "alg": (_MALFORMED, "delegation_record alg is not on the allow-list"),
        "typ": (_MALFORMED, f"delegation_record typ must be {RECORD_TYP}"),
        "kid": (_MALFORMED, "delegation_record header must name a kid")})


@dataclass(frozen=True, slots=True)
class _RecordRules:
    """The delegation-record policy of the one verifier: signed with a key registered for
    the authenticated client (named by ``kid``), whose algorithm is the header's."""

    keys: Mapping[str, PublicKey]
    allowed_algs: tuple[str, ...]
    refusals = _REFUSALS
    key_named_by_payload = False
    accepts_high_s = False
    max_bytes = MAX_RECORD_BYTES

    @staticmethod
    def refuse(reason: str, message: str) -> InvalidRequest | InvalidGrant:
        return _bad_record(reason, message)

    def check_header(self, header: dict[str, Any]) -> None:
        _HEADER.check(header, self.allowed_algs, self.refuse)

    def choose_key(self, header: dict[str, Any], payload: dict[str, Any] | None) -> PublicKey:
        key = self.keys.get(header["kid"])
        if key is None or key.alg != header["alg"]:
            raise InvalidGrant("delegation_record is not signed with a key registered for the "
                               "authenticated client", reason="delegation_signer_mismatch")
        return key

    def check_claims(self, payload: dict[str, Any], key: PublicKey, size: int, *,
                     now: int) -> DelegationRecord:
        if "delegator_signature" in payload or "as_signature" in payload:
            raise InvalidRequest("delegation_record carries a signature member",
                                 reason="delegation_record_malformed")
        try:
            return DelegationRecord.model_validate(payload)
        except (ValidationError, ValueError) as exc:
            raise InvalidRequest("delegation_record members are invalid",
                                 reason="delegation_record_malformed") from exc


def verify_record(token: object, *, keys: Mapping[str, PublicKey],
                  allowed_algs: tuple[str, ...], now: int) -> DelegationRecord:
    """The record ``token`` holds, signed with one of ``keys`` (the authenticated client's
    registered keys), in its canonical form; with its ``delegator_signature`` set."""
    record = verify_jws(token, _RecordRules(keys, allowed_algs), now=now)
    assert isinstance(token, str)
    _header, payload, _ = token.split(".")
    try:
        sent = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as exc:  # verify_jws decoded it: not reached
        raise InvalidRequest("delegation_record cannot be decoded",
                             reason="delegation_record_malformed") from exc
    if sent != canonical(record):
        raise InvalidRequest("delegation_record payload is not in its canonical (RFC 8785) "
                             "form", reason="delegation_record_not_canonical")
    return record.model_copy(update={"delegator_signature": detached(token)})


def check_record(record: DelegationRecord, subject: AccessClaims, *, client: str,
                 audience: str | None, requested: frozenset[str] | None, now: int,
                 leeway: int) -> None:
    """The record is the authenticated client's hand-off of this subject token to the
    requested audience, of scopes the client holds, made now; the requested scopes (if any)
    are among those it hands off."""
    if audience is None:
        raise InvalidRequest("a delegation_record goes with a hand-off (audience), not a "
                             "service token", reason="delegation_record_unexpected")
    if record.delegator_id != client:
        raise InvalidGrant("delegation_record names a delegator other than the authenticated "
                           "client", reason="delegation_signer_mismatch")
    if record.delegatee_id != audience:
        raise InvalidTarget("delegation_record names a delegatee other than the requested "
                            "audience", reason="delegation_delegatee_mismatch")
    if record.parent_jti != subject.jti:
        raise InvalidGrant("delegation_record names another parent token than the "
                           "subject_token", reason="delegation_parent_mismatch")
    if record.run_id != subject.ctx.run_id:
        raise InvalidGrant("delegation_record names another run than the subject_token's",
                           reason="delegation_run_mismatch")
    extra = sorted(record.scopes - subject.scopes)
    if extra:
        raise InvalidGrant(f"delegation_record hands off scopes the delegator does not hold: "
                           f"{' '.join(extra)}", reason="delegation_scope_exceeds_held")
    if record.delegation_timestamp > now + leeway:
        raise InvalidGrant("delegation_record is dated in the future",
                           reason="delegation_record_future")
    if record.delegation_timestamp < now - MAX_RECORD_AGE_SECONDS:
        raise InvalidGrant(f"delegation_record is older than {MAX_RECORD_AGE_SECONDS}s",
                           reason="delegation_record_stale")
    if requested is not None and not requested <= record.scopes:
        raise InvalidScope("scope requested beyond what the delegation_record hands off",
                           reason="scope_not_delegated")


def confine(claims: AccessClaims, record: DelegationRecord) -> AccessClaims:
    """The new token's scopes narrowed to what the record hands off (the exchange rules
    may grant the delegatee more of what the delegator holds than it chose to hand off)."""
    kept = [s for s in claims.scope.split() if s in record.scopes]
    if not kept:
        raise InvalidScope("nothing the delegation_record hands off is grantable here",
                           reason="no_grantable_scope")
    return claims.model_copy(update={"scope": " ".join(kept)})


def extend_chain(subject: AccessClaims,
                 record: DelegationRecord | None) -> tuple[DelegationRecord, ...] | None:
    """The ``delegation_chain`` of a hand-off from ``subject``: the attested ``record`` before
    the subject's records, when every earlier hand-off was confirmed; otherwise none (a chain
    with a hop missing would not match ``act`` one to one)."""
    if record is None:
        return None
    earlier = subject.delegation_chain or ()
    if len(earlier) != max(len(subject.holders) - 1, 0):
        return None
    return (record, *earlier)
