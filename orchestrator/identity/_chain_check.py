"""Verifying a token's ``delegation_chain`` where it is used (pure: the keys and the clock are
the caller's). docs/delegation-chain.md.

:func:`verify_chain` judges every record and the chain as a whole:

* each record is signed by its delegator (``delegator_signature``, a detached JWS over the
  record's canonical form, by a key registered for ``delegator_id``: the caller's
  ``client_keys``) and attested by the authorization server (``as_signature``, by one of its
  published keys);
* the records match the ``act`` nesting one to one: record *i* hands the chain from holder
  *i + 1* to holder *i* (:attr:`~._claims.AccessClaims.holders`), for the token's run, from a
  token among its ancestors;
* each record's scopes narrow or equal the earlier record's, and the token's scopes are among
  the most recent record's; each record is no earlier than the one before it and not after
  the token.

A delegated token without a chain is ``unconfirmed``; a service whose policy requires
confirmed chains refuses it as ``unconfirmed_delegation``, and any chain that fails a check is
refused everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.errors import InfraBotError
from orchestrator.identity import _jws
from orchestrator.identity._claims import AccessClaims, DelegationRecord
from orchestrator.identity._delegation import ATTESTATION_TYP, RECORD_TYP, canonical
from orchestrator.identity._keys import PublicKey
from orchestrator.identity._verify import HeaderRules

ClientKeys = Callable[[str, str], PublicKey | None]
"""A registered client's public key by (client id, kid); None if it has none of that kid."""
ServerKeys = Callable[[str], PublicKey | None]
"""The authorization server's published key by kid."""

# Each record's status, and the reason a chain with that status first is refused for.
VERIFIED = "verified"
_REASONS = {
    "delegator_signature_missing": "delegation_signature_invalid",
    "delegator_key_unknown": "delegation_signature_invalid",
    "delegator_signature_invalid": "delegation_signature_invalid",
    "attestation_invalid": "delegation_attestation_invalid",
    "act_mismatch": "delegation_chain_mismatch",
    "run_mismatch": "delegation_chain_mismatch",
    "parent_mismatch": "delegation_chain_mismatch",
    "scope_widened": "delegation_scope_widened",
    "time_order": "delegation_time_invalid",
}


@dataclass(frozen=True, slots=True)
class RecordStatus:
    """One record and what its check found (:data:`VERIFIED` or the first failure)."""

    record: DelegationRecord
    status: str

    def view(self) -> dict[str, Any]:
        return {"delegator": self.record.delegator_id, "delegatee": self.record.delegatee_id,
                "scope": self.record.scope, "at": self.record.delegation_timestamp,
                "status": self.status}


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on a token's chain: ``confirmed`` (every hand-off has a verified record, or
    there was none to confirm), ``unconfirmed`` (delegated, no chain) or ``invalid``, with the
    refusal's ``reason`` and each record's status."""

    status: Literal["confirmed", "unconfirmed", "invalid"]
    reason: str | None
    records: tuple[RecordStatus, ...] = ()

    def view(self) -> dict[str, Any]:
        return {"status": self.status, **({"reason": self.reason} if self.reason else {}),
                "records": [r.view() for r in self.records]}


def verify_chain(claims: AccessClaims, *, client_keys: ClientKeys, server_keys: ServerKeys,
                 allowed_algs: tuple[str, ...], leeway: int) -> ChainReport:
    """The verdict on ``claims``' chain (see the module's docstring). The key lookups may
    raise :class:`~orchestrator.errors.Unavailable`: nothing is then confirmed."""
    chain = claims.delegation_chain or ()
    holders = claims.holders
    hops = max(len(holders) - 1, 0)
    if not chain:
        return (ChainReport("confirmed", None) if hops == 0
                else ChainReport("unconfirmed", "unconfirmed_delegation"))
    statuses = tuple(
        RecordStatus(record, _status(claims, chain, index, holders, client_keys, server_keys,
                                     allowed_algs, leeway))
        for index, record in enumerate(chain))
    first_bad = next((s.status for s in statuses if s.status != VERIFIED), None)
    if first_bad is not None:
        return ChainReport("invalid", _REASONS[first_bad], statuses)
    if len(chain) != hops:
        return ChainReport("invalid", "delegation_chain_mismatch", statuses)
    return ChainReport("confirmed", None, statuses)


def _status(claims: AccessClaims, chain: tuple[DelegationRecord, ...], index: int,
            holders: list[str], client_keys: ClientKeys, server_keys: ServerKeys,
            algs: tuple[str, ...], leeway: int) -> str:
    record = chain[index]
    if index + 1 >= len(holders) or record.delegatee_id != holders[index] \
            or record.delegator_id != holders[index + 1]:
        return "act_mismatch"
    if record.run_id != claims.ctx.run_id:
        return "run_mismatch"
    if record.parent_jti not in claims.ancestors:
        return "parent_mismatch"
    if index == 0 and not claims.scopes <= record.scopes:
        return "scope_widened"
    if record.delegation_timestamp > claims.iat + leeway:
        return "time_order"
    return record_status(chain, index, client_keys, server_keys, algs)


def record_status(chain: tuple[DelegationRecord, ...], index: int, client_keys: ClientKeys,
                  server_keys: ServerKeys, algs: tuple[str, ...]) -> str:
    """What can be told of record ``index`` without its token: its scopes narrow or equal the
    earlier record's, it is no earlier than that one, its delegator signed it and the server
    attested it. (:func:`verify_chain` also matches it to the token's ``act``, run and
    ancestors; a run's log shows this much, with the keys of its state directory.)"""
    record = chain[index]
    earlier = chain[index + 1] if index + 1 < len(chain) else None
    if earlier is not None and not record.scopes <= earlier.scopes:
        return "scope_widened"
    if earlier is not None and record.delegation_timestamp < earlier.delegation_timestamp:
        return "time_order"
    signed = canonical(record)
    delegator = record.delegator_signature
    if delegator is None:
        return "delegator_signature_missing"
    status = _detached_ok(delegator, signed, RECORD_TYP, algs,
                          lambda kid: client_keys(record.delegator_id, kid))
    if status is not None:
        return f"delegator_{status}"
    attested = record.as_signature
    if attested is None or _detached_ok(attested, signed, ATTESTATION_TYP, algs,
                                        server_keys) is not None:
        return "attestation_invalid"
    return VERIFIED


class _Bad(InfraBotError):
    pass


def _bad(reason: str, message: str) -> _Bad:
    return _Bad(message)


def _header_rules(typ: str) -> HeaderRules:
    bad = ("signature_invalid", "")
    return HeaderRules(typ=frozenset({typ}), typ_required=True, kid_max=128,
                       extra_params=frozenset(),
                       refusals=dict.fromkeys(("key_in_header", "crit", "unexpected_header",
                                               "alg", "typ", "kid"), bad))


_RULES = {typ: _header_rules(typ) for typ in (RECORD_TYP, ATTESTATION_TYP)}


def _detached_ok(signature: str, payload: bytes, typ: str, algs: tuple[str, ...],
                 keys: Callable[[str], PublicKey | None]) -> str | None:
    """None if ``signature`` (a detached compact JWS) signs ``payload`` with the key ``keys``
    gives for its ``kid``; else ``key_unknown`` or ``signature_invalid``."""
    header_segment, empty, signature_segment = (signature.split(".") + ["", ""])[:3]
    if signature.count(".") != 2 or empty or not header_segment or not signature_segment:
        return "signature_invalid"
    try:
        header = _jws.unverified_header(header_segment)
        _RULES[typ].check(header, algs, _bad)
    except (_jws.MalformedJWS, _Bad):
        return "signature_invalid"
    key = keys(header["kid"])
    if key is None or key.alg != header["alg"]:
        return "key_unknown"
    parts = [header_segment, _jws.b64url(payload), signature_segment]
    try:
        ok = _jws.signature_ok(_jws.decode(parts), key)
    except (_jws.MalformedJWS, _jws.MalleableSignature):
        return "signature_invalid"
    return None if ok else "signature_invalid"
