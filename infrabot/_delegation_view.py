"""A ``delegation_chain`` as the tools show it (``token inspect``, ``runs show``, the demo's
report and JSON): each record with its verification status, judged with the keys of the state
directory (the client registry the server authenticates agents by, the server's signing key
ring); docs/delegation-chain.md."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.authserver import ClientKeys, open_registry
from orchestrator.config import Settings
from orchestrator.errors import ConfigError, Unavailable
from orchestrator.identity import (
    AccessClaims,
    DelegationRecord,
    PublicKey,
    RecordStatus,
    record_status,
    verify_chain,
)
from orchestrator.keystore import KeyRing
from orchestrator.runs import Exchanged, Run


class StateKeys:
    """The state directory's keys, read once: agents' registered keys and the issuer's."""

    def __init__(self, settings: Settings) -> None:
        self.algs = tuple(settings.allowed_algs)
        self.leeway = settings.leeway_seconds
        self._clients = ClientKeys(open_registry(settings), self.algs)
        signing = settings.keys_dir / "signing"
        self._server = (KeyRing.open(signing, settings.signing_alg, now=int(time.time())).jwks()
                        if (signing / "keyring.json").is_file() else None)

    def client(self, client: str, kid: str) -> PublicKey | None:
        return self._clients(client).get(kid)

    def server(self, kid: str) -> PublicKey | None:
        return self._server.get(kid) if self._server is not None else None


def _keys(settings: Settings) -> StateKeys | None:
    try:
        return StateKeys(settings)
    except (ConfigError, Unavailable):
        return None


def token_chain(settings: Settings, claims: AccessClaims) -> dict[str, Any]:
    """The verdict on a verified token's chain, with each record's status."""
    found = _keys(settings)
    if found is None:
        return {"status": "not_checked", "reason": "client_registry_unavailable",
                "records": [RecordStatus(r, "not_checked").view()
                            for r in claims.delegation_chain or ()]}
    return verify_chain(claims, client_keys=found.client, server_keys=found.server,
                        allowed_algs=found.algs, leeway=found.leeway).view()


def records_view(found: StateKeys | None,
                 chain: tuple[DelegationRecord, ...]) -> list[dict[str, Any]]:
    """Each record of a chain seen without its token (a run's log): signatures, narrowing and
    order checked (:func:`~orchestrator.identity.record_status`) with ``found`` keys (None:
    not checked)."""
    if found is None:
        return [RecordStatus(r, "not_checked").view() for r in chain]
    return [RecordStatus(r, record_status(chain, i, found.client, found.server,
                                          found.algs)).view()
            for i, r in enumerate(chain)]


def chain_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per record, most recent first, as a person reads it."""
    return [f"{r['delegator']} -> {r['delegatee']} [{r['scope']}] at {r['at']}: {r['status']}"
            for r in records]


def run_chains(settings: Settings, run: Run) -> list[dict[str, Any]]:
    """Each distinct ``delegation_chain`` the run's tokens carried (from the claims its log
    shows of each exchange), with the exchange that first carried it and each record's
    status."""
    seen: set[tuple[str, ...]] = set()
    out: list[dict[str, Any]] = []
    found = _keys(settings) if any(isinstance(e.detail, Exchanged) for e in run.events) \
        else None
    for event in run.events:
        detail = event.detail
        if not isinstance(detail, Exchanged):
            continue
        raw = (detail.claims or {}).get("delegation_chain")
        if not isinstance(raw, list) or not raw:
            continue
        try:
            chain = tuple(DelegationRecord.model_validate(r) for r in raw)
        except ValueError:  # a log entry that is not a chain: shown as such
            out.append({"agent": event.agent, "for": detail.for_, "records": [],
                        "status": "unreadable"})
            continue
        key = tuple(str(r.delegator_signature) for r in chain)
        if key in seen:
            continue
        seen.add(key)
        out.append({"agent": event.agent, "for": detail.for_,
                    "records": records_view(found, chain)})
    return out
