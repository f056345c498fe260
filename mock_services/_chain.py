"""Delegator-confirmed chains at a service (issue 16; docs/delegation-chain.md).

:meth:`ChainCheck.check` judges a verified token's ``delegation_chain`` with the identity
core's :func:`~orchestrator.identity.verify_chain`: every delegator signature against the
agents' registered public keys, which the authorization server publishes at
``/client_keys.json`` (fetched here, cached, refreshed on an unknown key at most once per
``min_refresh_seconds`` and at least every ``max_age_seconds``), every attestation against its
published signing keys. A chain that fails any check is refused (401 ``invalid_token`` with
its reason) at every service; a delegated token with no chain is refused as
``unconfirmed_delegation`` where the directory says ``delegation: required``. Keys that cannot
be fetched refuse the request (503): nothing is confirmed then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from mock_services._jwks import SerialKeySource
from orchestrator.authserver import CLIENT_KEYS_PATH
from orchestrator.config import Settings
from orchestrator.errors import InvalidToken, Unavailable
from orchestrator.federation import get_json
from orchestrator.identity import (
    AccessClaims,
    CachedJWKS,
    ChainReport,
    Directory,
    JWKSet,
    KeySource,
    PublicKey,
    verify_chain,
)

FETCH_TIMEOUT_SECONDS = 2.0


def client_key_set(document: object, allowed_algs: tuple[str, ...]) -> JWKSet:
    """The agents' keys of a ``/client_keys.json`` document, each under ``"<client> <kid>"``;
    :class:`ValueError` if it is not one."""
    clients = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(clients, dict):
        raise ValueError("a client key document has a 'clients' object")  # noqa: TRY004
    keys: dict[str, PublicKey] = {}
    for client, entry in clients.items():
        for kid in (found := JWKSet.from_dict(entry, allowed_algs)).kids():
            key = found.get(kid)
            assert key is not None
            keys[f"{client} {kid}"] = key
    return JWKSet(keys)


def remote_client_keys(settings: Settings, *, clock: Callable[[], float] = time.monotonic,
                       min_refresh_seconds: float = 5.0, max_age_seconds: float = 60.0,
                       transport: httpx.BaseTransport | None = None) -> CachedJWKS:
    """The agents' public keys the authorization server publishes, cached."""
    url = settings.auth_url.rstrip("/") + CLIENT_KEYS_PATH

    def fetch() -> dict[str, Any]:
        try:
            with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, transport=transport,
                              follow_redirects=False) as client:
                return get_json(client, url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"client keys unreachable: {type(exc).__name__}",
                              reason="client_keys_unavailable") from exc

    return CachedJWKS(fetch, settings.allowed_algs, clock, min_refresh_seconds,
                      max_age_seconds=max_age_seconds, parse=client_key_set)


class ChainCheck:
    """One service's chain policy: ``required`` from the directory (``delegation``)."""

    def __init__(self, settings: Settings, directory: Directory, service: str | None,
                 server_keys: KeySource, client_keys: KeySource | None = None) -> None:
        listed = directory.services.get(service) if service else None
        self.required = listed is not None and listed.delegation == "required"
        self._server = server_keys
        # Shared by request threads: serialised, so the refresh limit holds (SerialKeySource).
        self._clients = SerialKeySource(client_keys or remote_client_keys(settings))
        self._algs = tuple(settings.allowed_algs)
        self._leeway = settings.leeway_seconds

    def report(self, claims: AccessClaims) -> ChainReport:
        return verify_chain(claims, client_keys=lambda c, kid: self._clients.get(f"{c} {kid}"),
                            server_keys=self._server.get, allowed_algs=self._algs,
                            leeway=self._leeway)

    def check(self, claims: AccessClaims) -> None:
        """Refuse a token whose chain fails, or is missing where this service requires one."""
        if not claims.delegation_chain and not self.required:
            return
        report = self.report(claims)
        if report.status == "invalid":
            raise InvalidToken("the token's delegation_chain does not verify",
                               reason=report.reason or "delegation_chain_invalid")
        if report.status == "unconfirmed" and self.required:
            raise InvalidToken("this service requires a delegation confirmed by every "
                               "delegator", reason="unconfirmed_delegation")
