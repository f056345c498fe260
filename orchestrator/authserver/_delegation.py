"""The ``delegation_chain`` of an exchanged token (issue 16; docs/delegation-chain.md).

A hand-off may carry the delegator's signed record (``delegation_record``): verified with the
authenticated client's registered keys and checked against the exchange
(:func:`~orchestrator.identity.verify_record`, :func:`~orchestrator.identity.check_record`),
it narrows the new token to what it hands off, is attested with the server's signing key and
goes first in the new token's chain. A service token carries its subject token's chain as it
is; a hand-off without a record carries none (its delegation is unconfirmed).
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.authserver._context import Server
from orchestrator.authserver._forms import TokenRequest
from orchestrator.identity import (
    AccessClaims,
    DelegationRecord,
    Grant,
    attest,
    check_record,
    confine,
    extend_chain,
    parse_scopes,
    verify_record,
)


def sent_record(server: Server, client: str, request: TokenRequest, subject: AccessClaims, *,
                now: int) -> DelegationRecord | None:
    """The request's verified delegation record, checked against this exchange (None if it
    sends none)."""
    sent = request.delegation_record.get()
    if sent is None:
        return None
    record = verify_record(sent, keys=server.client_keys(client),
                           allowed_algs=server.settings.allowed_algs, now=now)
    scope = request.scope.get()
    check_record(record, subject, client=client, audience=request.audience.get(),
                 requested=parse_scopes(scope) if scope else None, now=now,
                 leeway=server.settings.leeway_seconds)
    return record


def with_chain(server: Server, grant: Grant, subject: AccessClaims,
               record: DelegationRecord | None, *, now: int) -> Grant:
    """``grant`` with its ``delegation_chain`` (see the module's docstring)."""
    claims = grant.claims
    if claims.may_act is None:  # a service token: the chain it was exchanged from
        chain = subject.delegation_chain
    elif record is None:
        chain = None
    else:
        claims = confine(claims, record)
        server.keyring.refresh(now=now)
        chain = extend_chain(subject, attest(record, server.keyring.current))
    return replace(grant, claims=claims.model_copy(update={"delegation_chain": chain}))
