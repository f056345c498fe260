"""Every answer of ``POST /dpop_keys`` is one audit record (action ``dpop_key``), as the token
endpoint audits its grants and refusals: a registration is an ``allow`` naming the key's
thumbprint, each refusal a ``deny`` with its reason and status, by the agent once it is
authenticated; never the proof, the assertion or any token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.authserver import RegistryKeyBook
from orchestrator.errors import ConfigError
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    PublicKey,
    SigningKey,
    jkt_of,
    make_assertion,
    make_proof,
)

from .conftest import ARGOCD, INFRABOT, AuthServer, refusal, serve
from .test_dpop_key_registry import new_key

ACTION = "dpop_key"


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server with DPoP binding on, its nonce required."""
    with serve(tmp_path_factory.mktemp("dpop-key-audit"), dpop_binding=True) as srv:
        yield srv


def proof_for(srv: AuthServer, key: SigningKey, *, nonce: bool = True) -> str:
    """A fresh proof for ``POST /dpop_keys`` by ``key`` (with the server's current nonce)."""
    value = srv.post("/token", {}).headers["dpop-nonce"] if nonce else None
    return make_proof(key, method="POST", url=f"{srv.url}/dpop_keys", now=int(time.time()),
                      nonce=value)


def denied(srv: AuthServer, send: httpx.Response, status: int, error: str, reason: str,
           mark: int, *sent: str, agent: str | None) -> None:
    """The refusal answered, and its one deny record: by ``agent``, with the status."""
    refusal(send, status, error, reason)
    record = srv.assert_denied(mark, reason, *sent)
    assert (record.action, record.performed_by, record.status) == (ACTION, agent, status)
    assert record.run_id is None and record.on_behalf_of is None


def test_a_registration_is_audited_as_an_allow_naming_the_key(bound: AuthServer) -> None:
    key = new_key()
    proof, auth = proof_for(bound, key), bound.auth(INFRABOT)
    mark = bound.audit_mark()
    answer = bound.post("/dpop_keys", auth, headers={"DPoP": proof})
    assert answer.status_code == 200, answer.text
    records = bound.records_since(mark)
    assert [(r.action, r.decision, r.reason, r.performed_by, r.status) for r in records] == [
        (ACTION, "allow", "ok", INFRABOT, 200)]
    assert records[0].resource == f"jkt:{jkt_of(key.public)}" == f"jkt:{answer.json()['jkt']}"
    bound.assert_not_stored(proof, auth["client_assertion"])


def test_a_registration_without_a_proof_is_audited(bound: AuthServer) -> None:
    auth = bound.auth(INFRABOT)
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", auth), 400, "invalid_dpop_proof",
           "dpop_proof_missing", mark, auth["client_assertion"], agent=INFRABOT)


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda proof: proof[:-6] + "AAAAAA", "dpop_bad_signature"),
    (lambda proof: "not-a-proof", "dpop_proof_malformed"),
])
def test_an_invalid_proof_is_audited(bound: AuthServer, mangle: object, reason: str) -> None:
    proof = mangle(proof_for(bound, new_key()))  # type: ignore[operator]
    auth = bound.auth(INFRABOT)
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", auth, headers={"DPoP": proof}), 400,
           "invalid_dpop_proof", reason, mark, proof, auth["client_assertion"], agent=INFRABOT)


def test_a_proof_without_the_nonce_is_audited(bound: AuthServer) -> None:
    proof, auth = proof_for(bound, new_key(), nonce=False), bound.auth(INFRABOT)
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", auth, headers={"DPoP": proof}), 400,
           "use_dpop_nonce", "dpop_nonce_missing", mark, proof, agent=INFRABOT)


def test_two_proofs_are_audited(bound: AuthServer) -> None:
    first, second = proof_for(bound, new_key()), proof_for(bound, new_key())
    mark = bound.audit_mark()
    sent = bound.http.post(f"{bound.url}/dpop_keys", data=bound.auth(INFRABOT),
                           headers=[("DPoP", first), ("DPoP", second)])
    denied(bound, sent, 400, "invalid_dpop_proof", "dpop_proof_repeated", mark, first, second,
           agent=None)


def test_an_unauthenticated_registration_is_audited(bound: AuthServer) -> None:
    proof = proof_for(bound, new_key())
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", {"client_id": INFRABOT}, headers={"DPoP": proof}),
           401, "invalid_client",
           "client_authentication_missing", mark, proof, agent=None)


def test_an_unknown_client_is_audited(bound: AuthServer) -> None:
    proof, rogue = proof_for(bound, new_key()), new_key()
    assertion = make_assertion(rogue, issuer="agent:rogue", subject="agent:rogue",
                               audience=f"{bound.url}/token", now=int(time.time()), ttl=60)
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion,
            "client_id": "agent:rogue"}
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", form, headers={"DPoP": proof}), 401,
           "invalid_client", "unknown_client", mark, proof, assertion, agent=None)


def test_a_body_that_is_not_a_form_is_audited(bound: AuthServer) -> None:
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", content=b"{}",
                             headers={"content-type": "application/json"}),
           400, "invalid_request", "unsupported_content_type", mark, agent=None)


def test_a_key_in_use_is_audited(bound: AuthServer) -> None:
    own = bound.stack.clients[INFRABOT]  # the agent's client key is no DPoP key
    proof, auth = proof_for(bound, own), bound.auth(INFRABOT)
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", auth, headers={"DPoP": proof}), 400,
           "invalid_dpop_proof", "dpop_key_in_use", mark, proof, agent=INFRABOT)


def test_a_revoked_key_is_audited(bound: AuthServer) -> None:
    key = new_key()
    assert bound.post("/dpop_keys", bound.auth(ARGOCD),
                      headers={"DPoP": proof_for(bound, key)}).status_code == 200
    registry = bound.stack.registry
    assert registry is not None
    assert registry.revoke(f"dpop:{ARGOCD}", key.kid, now=int(time.time()))
    proof, auth = proof_for(bound, key), bound.auth(ARGOCD)
    mark = bound.audit_mark()
    denied(bound, bound.post("/dpop_keys", auth, headers={"DPoP": proof}), 400,
           "invalid_dpop_proof", "dpop_key_revoked", mark, proof, agent=ARGOCD)


class Broken:
    """A registry whose every use fails as an unreadable state directory's does."""

    def renew(self, client_id: str, key: PublicKey, *, now: int, keep: int,
              since: int) -> None:
        raise ConfigError("cannot read the client registry: Permission denied")


def test_a_registry_that_cannot_be_used_is_audited(tmp_path: Path) -> None:
    with serve(tmp_path, dpop_binding=True) as srv:
        srv.stack.auth.dpop.book = RegistryKeyBook(Broken(), 60)  # type: ignore[arg-type]
        proof, auth = proof_for(srv, new_key()), srv.auth(INFRABOT)
        mark = srv.audit_mark()
        denied(srv, srv.post("/dpop_keys", auth, headers={"DPoP": proof}), 503,
               "temporarily_unavailable", "client_registry_unavailable", mark, proof,
               agent=INFRABOT)


def test_two_proofs_at_the_token_endpoint_are_audited_too(bound: AuthServer) -> None:
    first, second = proof_for(bound, new_key()), proof_for(bound, new_key())
    mark = bound.audit_mark()
    sent = bound.http.post(f"{bound.url}/token", data=bound.auth(INFRABOT),
                           headers=[("DPoP", first), ("DPoP", second)])
    refusal(sent, 400, "invalid_dpop_proof", "dpop_proof_repeated")
    record = bound.assert_denied(mark, "dpop_proof_repeated", first, second)
    assert (record.action, record.performed_by, record.status) == ("token", None, 400)
