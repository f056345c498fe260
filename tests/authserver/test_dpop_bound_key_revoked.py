"""Tokens bound to a revoked DPoP key, at the authorization server over real HTTP with binding
on, on both registries: ``POST /revocations`` with ``jkt`` (a trusted client's) refuses every
token bound to that key (``bound_key_revoked``) at the token endpoint and at introspection, even
with a valid proof by the key; tokens bound to other keys are untouched; the revocation is one
audit record (docs/dpop.md, "Revoking a key")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from authserver.conftest import ARGOCD, CLEANUP, INFRABOT, ORCH, AuthServer, refusal, serve
from authserver.test_dpop_token import AGENTS, dpop_client, exchange, jkt, proof
from orchestrator.identity import RevocationStore
from orchestrator.registry import RedisRevocationStore
from tests._redis import DEFAULT_TEST_REDIS_URL


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def bound(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthServer]:
    """A server of its own (a revoked key stays revoked), binding on, on each registry."""
    revocation: RevocationStore | None = None
    if request.param == "redis":
        request.getfixturevalue("redis_url")  # skips (or fails on CI) without Redis
        url = os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
        revocation = RedisRevocationStore(redis.Redis.from_url(url, socket_timeout=1.0))
    with serve(tmp_path / "state", revocation=revocation, dpop_binding=True) as srv:
        for agent in AGENTS:
            srv.clients[agent] = dpop_client(srv, agent)
        yield srv
    if revocation is not None:
        revocation.close()


def test_a_revoked_key_takes_the_tokens_bound_to_it(bound: AuthServer) -> None:
    root, h1, h2, _ = bound.chain()
    argocd_key = jkt(bound, ARGOCD)
    mark = bound.audit_mark()

    assert bound.clients[ORCH].revoke_by(jkt=argocd_key) == {"revoked": "jkt",
                                                             "jkt": argocd_key}

    assert [(r.decision, r.reason, r.performed_by, r.resource)
            for r in bound.records_since(mark)] == [
        ("allow", "jkt_revoked", ORCH, f"jkt:{argocd_key}")]
    # ArgoCD's hand-off, presented by ArgoCD with a valid proof by the revoked key
    response = exchange(bound, ARGOCD, h1, proof(bound, ARGOCD), audience=CLEANUP)
    refusal(response, 400, "invalid_request", "bound_key_revoked")  # RFC 8693 2.2.2
    assert bound.introspect(h1).json() == {"active": False}
    # the tokens bound to the other agents' keys are untouched
    assert bound.introspect(root).json()["active"] is True
    assert bound.introspect(h2).json()["active"] is True
    assert bound.clients[INFRABOT].exchange(root, audience=ARGOCD)["token_type"] == "DPoP"


def test_only_a_trusted_client_may_revoke_a_key(bound: AuthServer) -> None:
    _, h1, *_ = bound.chain()
    mark = bound.audit_mark()
    form = {**bound.auth(ARGOCD), "jkt": jkt(bound, ARGOCD)}
    refusal(bound.post("/revocations", form), 400, "unauthorized_client", "client_not_trusted")
    bound.assert_denied(mark, "client_not_trusted", form["client_assertion"])
    assert bound.introspect(h1).json()["active"] is True
