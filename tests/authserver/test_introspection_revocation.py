"""RFC 7662 introspection, RFC 7009 revocation, and revocation by jti, user and run, cascading
to every token exchanged from a revoked one. The revocation rules run on both registries."""

from __future__ import annotations

import time

import pytest

from orchestrator.errors import Unavailable
from orchestrator.identity import CLIENT_ASSERTION_TYPE

from .conftest import (
    ARGOCD,
    CLEANUP,
    INFRABOT,
    ORCH,
    AuthServer,
    refusal,
    unverified_claims,
)

INACTIVE = {"active": False}


def _active(server: AuthServer, token: str) -> bool:
    response = server.introspect(token)
    assert response.status_code == 200, response.text
    body = response.json()
    if not body["active"]:
        assert body == INACTIVE
    return bool(body["active"])


# -- introspection ---------------------------------------------------------------------------------


def test_introspection_requires_client_authentication(server: AuthServer) -> None:
    token = server.root()["access_token"]
    refusal(server.post("/introspect", {"token": token}), 401, "invalid_client",
            "client_authentication_missing")


def test_introspection_with_a_bad_assertion(server: AuthServer) -> None:
    token = server.root()["access_token"]
    form = {**server.auth(INFRABOT, key=server.stack.clients[ARGOCD]), "token": token}
    refusal(server.post("/introspect", form), 401, "invalid_client", "unknown_key")


def test_introspection_with_a_replayed_assertion(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), "token": server.root()["access_token"]}
    assert server.post("/introspect", form).status_code == 200
    refusal(server.post("/introspect", form), 401, "invalid_client", "assertion_replayed")


def test_introspection_without_a_token(server: AuthServer) -> None:
    refusal(server.post("/introspect", server.auth(ORCH)), 400, "invalid_request",
            "missing_parameter")


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJ.eyJ.eyJ", "x" * 9000, "%00"])
def test_introspection_of_garbage_is_inactive(server: AuthServer, garbage: str) -> None:
    response = server.introspect(garbage)
    assert response.status_code == 200
    assert response.json() == INACTIVE
    assert response.headers["cache-control"] == "no-store"


def test_introspection_of_an_expired_token_is_inactive(server: AuthServer) -> None:
    now = int(time.time())
    assert server.introspect(server.mint(iat=now - 900, exp=now - 300)).json() == INACTIVE


def test_introspection_of_a_revoked_token_is_inactive(server: AuthServer) -> None:
    token = server.root()["access_token"]
    assert _active(server, token)
    server.clients[ORCH].revoke(token)
    assert server.introspect(token).json() == INACTIVE


def test_introspection_by_the_agent_a_token_is_for(server: AuthServer) -> None:
    token = server.root()["access_token"]
    body = server.introspect(token, client_id=INFRABOT).json()
    assert body["active"] is True
    assert body["chain"] == ["user:sam"]
    assert body["may_act"] == {"sub": INFRABOT}
    assert body["token_type"] == "Bearer"


def test_introspection_answers_only_callers_entitled_to_the_token(server: AuthServer) -> None:
    """Its chain (the client it was issued to, its actors), its audience (may_act), or a
    trusted client; any other authenticated client learns nothing, audited with the reason."""
    root, h1, h2, aws = server.chain()
    entitled = {root: {ORCH, INFRABOT}, h1: {ORCH, INFRABOT, ARGOCD},
                h2: {ORCH, INFRABOT, ARGOCD, CLEANUP}, aws: {ORCH, INFRABOT, ARGOCD, CLEANUP}}
    for token, callers in entitled.items():
        for caller in (ORCH, INFRABOT, ARGOCD, CLEANUP):
            mark = server.audit_mark()
            body = server.introspect(token, client_id=caller).json()
            assert body["active"] is (caller in callers), (caller, unverified_claims(token))
            if caller not in callers:
                assert body == INACTIVE
                record = server.assert_denied(mark, "introspection_not_entitled", token)
                assert record.performed_by == caller


def test_introspection_refusals_are_audited_without_the_token(server: AuthServer) -> None:
    now = int(time.time())
    expired = server.mint(iat=now - 900, exp=now - 300)
    mark = server.audit_mark()
    assert server.introspect(expired).json() == INACTIVE
    new = server.records_since(mark)
    assert [(r.action, r.decision, r.reason) for r in new] == [
        ("introspect", "deny", "token_expired")]
    server.assert_not_stored(expired)


# -- RFC 7009 /revoke ------------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJ.eyJ.eyJ"])
def test_revoking_garbage_answers_200(server: AuthServer, garbage: str) -> None:
    response = server.post("/revoke", {**server.auth(ORCH), "token": garbage})
    assert response.status_code == 200
    assert response.content == b""


def test_revoking_an_expired_token_answers_200(server: AuthServer) -> None:
    now = int(time.time())
    expired = server.mint(iat=now - 900, exp=now - 300)
    assert server.post("/revoke", {**server.auth(ORCH), "token": expired}).status_code == 200


def test_revocation_requires_client_authentication(server: AuthServer) -> None:
    token = server.root()["access_token"]
    refusal(server.post("/revoke", {"token": token}), 401, "invalid_client",
            "client_authentication_missing")
    assert _active(server, token)


def test_revocation_with_an_unsupported_token_type_hint(server: AuthServer) -> None:
    token = server.root()["access_token"]
    form = {**server.auth(ORCH), "token": token, "token_type_hint": "id_token"}
    refusal(server.post("/revoke", form), 400, "unsupported_token_type", "unsupported_token_type")
    assert _active(server, token)


def test_revocation_with_a_known_token_type_hint(server: AuthServer) -> None:
    token = server.root()["access_token"]
    form = {**server.auth(ORCH), "token": token, "token_type_hint": "access_token"}
    assert server.post("/revoke", form).status_code == 200
    assert not _active(server, token)


def test_an_agent_may_not_revoke_a_token_it_is_not_part_of(server: AuthServer) -> None:
    root, h1, _, _ = server.chain()
    for agent, token in ((CLEANUP, root), (CLEANUP, h1), (INFRABOT, root)):
        form = {**server.auth(agent), "token": token}
        refusal(server.post("/revoke", form), 400, "unauthorized_client", "not_token_holder")
        assert _active(server, token)


def test_an_agent_may_revoke_a_token_it_acts_in(server: AuthServer) -> None:
    root, h1, h2, aws = server.chain()
    server.clients[INFRABOT].revoke(h1)
    assert _active(server, root)
    assert not any(_active(server, t) for t in (h1, h2, aws))


# -- revocation by the trusted orchestrator --------------------------------------------------------


def test_an_agent_calling_revocations_is_refused(server: AuthServer) -> None:
    for agent in (INFRABOT, ARGOCD, CLEANUP):
        form = {**server.auth(agent), "user": "user:sam"}
        refusal(server.post("/revocations", form), 400, "unauthorized_client",
                "client_not_trusted")


def test_revocations_requires_client_authentication(server: AuthServer) -> None:
    refusal(server.post("/revocations", {"user": "user:sam"}), 401, "invalid_client",
            "client_authentication_missing")


@pytest.mark.parametrize("targets", [{}, {"user": "user:sam", "run_id": "run-x"},
                                     {"jti": "abcdefgh", "user": "user:sam"}])
def test_revocations_needs_exactly_one_target(server: AuthServer, targets: dict[str, str]) -> None:
    refusal(server.post("/revocations", {**server.auth(ORCH), **targets}), 400,
            "invalid_request", "target_required")


def test_revocations_with_a_forged_orchestrator_assertion(server: AuthServer) -> None:
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "user": "user:sam",
            "client_assertion": server.assertion(ORCH, key=server.stack.clients[INFRABOT])}
    refusal(server.post("/revocations", form), 401, "invalid_client", "unknown_key")


# -- the revocation rules on both registries -------------------------------------------------------


def test_revoking_the_root_token_cascades(store_server: AuthServer) -> None:
    server = store_server
    root, h1, h2, aws = server.chain()
    assert all(_active(server, t) for t in (root, h1, h2, aws))
    server.clients[ORCH].revoke(root)
    for token in (root, h1, h2, aws):
        assert server.introspect(token).json() == INACTIVE
    refusal(server.exchange(INFRABOT, root, audience=ARGOCD), 400, "invalid_request",
            "token_revoked")
    refusal(server.exchange(ARGOCD, h1, audience=CLEANUP), 400, "invalid_request",
            "ancestor_revoked")
    mark = server.audit_mark()
    refusal(server.exchange(CLEANUP, h2, resource=server.aws), 400, "invalid_request",
            "ancestor_revoked")
    server.assert_denied(mark, "ancestor_revoked", h2)


def test_revoking_by_jti_cascades(store_server: AuthServer) -> None:
    server = store_server
    root, h1, h2, aws = server.chain()
    result = server.clients[ORCH].revoke_by(jti=unverified_claims(h1)["jti"])
    assert result == {"revoked": "jti", "jti": unverified_claims(h1)["jti"]}
    assert _active(server, root)
    assert not any(_active(server, t) for t in (h1, h2, aws))


def test_revoking_a_user_refuses_earlier_tokens_only(store_server: AuthServer) -> None:
    server = store_server
    root, h1, h2, aws = server.chain()
    before = server.stack.revocation.user_version("user:sam")
    result = server.clients[ORCH].revoke_by(user="user:sam")
    assert result == {"revoked": "user", "user": "user:sam", "version": before + 1}
    for token in (root, h1, h2, aws):
        assert server.introspect(token).json() == INACTIVE
    refusal(server.exchange(INFRABOT, root, audience=ARGOCD), 400, "invalid_request",
            "user_revoked")
    refusal(server.exchange(CLEANUP, h2, resource=server.aws), 400, "invalid_request",
            "user_revoked")
    fresh = server.chain()
    assert unverified_claims(fresh[0])["user_version"] == before + 1
    assert all(_active(server, t) for t in fresh)


def test_revoking_a_user_leaves_other_users(store_server: AuthServer) -> None:
    server = store_server
    robin = server.root(user="user:robin")["access_token"]
    server.clients[ORCH].revoke_by(user="user:sam")
    assert _active(server, robin)
    assert server.exchange(INFRABOT, robin, audience=ARGOCD).status_code == 200


def test_revoking_a_run(store_server: AuthServer) -> None:
    server = store_server
    ctx = server.ctx()
    root, h1, h2, aws = server.chain(ctx=ctx)
    other = server.chain()
    result = server.clients[ORCH].revoke_by(run_id=ctx.run_id)
    assert result == {"revoked": "run", "run_id": ctx.run_id}
    for token in (root, h1, h2, aws):
        assert server.introspect(token).json() == INACTIVE
    refusal(server.exchange(ARGOCD, h1, audience=CLEANUP), 400, "invalid_request", "run_revoked")
    assert all(_active(server, t) for t in other)
    fresh_in_run = server.root(ctx=ctx)["access_token"]  # a revoked run stays revoked
    refusal(server.exchange(INFRABOT, fresh_in_run, audience=ARGOCD), 400, "invalid_request",
            "run_revoked")


def test_revocations_are_audited(store_server: AuthServer) -> None:
    server = store_server
    ctx = server.ctx()
    mark = server.audit_mark()
    server.clients[ORCH].revoke_by(run_id=ctx.run_id)
    new = server.records_since(mark)
    assert [(r.action, r.decision, r.reason, r.resource, r.performed_by) for r in new] == [
        ("revoke", "allow", "run_revoked", f"run_id:{ctx.run_id}", ORCH)]


# -- an unreachable registry -----------------------------------------------------------------------


# what a token says of a registry that cannot be asked
UNREACHED = {"user_version": 0, "registry_epoch": "epoch-unreached"}


def test_an_unreachable_registry_fails_closed(registry_down: AuthServer) -> None:
    server = registry_down
    token = server.mint(**UNREACHED)
    for path, form in (("/token", {**server.auth(INFRABOT),
                                   **server.exchange_form(token, audience=ARGOCD)}),
                       ("/introspect", {**server.auth(ORCH), "token": token}),
                       ("/revoke", {**server.auth(ORCH), "token": token}),
                       ("/revocations", {**server.auth(ORCH), "user": "user:sam"})):
        response = server.post(path, form)
        refusal(response, 503, "temporarily_unavailable", "revocation_unavailable")
        assert response.headers["retry-after"] == "1"
    health = server.http.get(f"{server.url}/health")
    assert health.status_code == 503
    assert health.json() == {"status": "degraded", "reason": "revocation_unavailable"}


def test_an_unreachable_registry_is_audited(registry_down: AuthServer) -> None:
    server = registry_down
    token = server.mint(**UNREACHED)
    form = {**server.auth(INFRABOT), **server.exchange_form(token, audience=ARGOCD)}
    mark = server.audit_mark()
    refusal(server.post("/token", form), 503, "temporarily_unavailable", "revocation_unavailable")
    record = server.assert_denied(mark, "revocation_unavailable", token)
    assert record.status == 503


def test_the_client_raises_unavailable_when_the_registry_is_down(
        registry_down: AuthServer) -> None:
    with pytest.raises(Unavailable) as caught:
        registry_down.clients[ORCH].introspect(registry_down.mint(**UNREACHED))
    assert caught.value.reason == "revocation_unavailable"


def test_a_revoked_subject_is_audited_with_its_chain(server: AuthServer) -> None:
    """A refusal for revocation names whose delegation it refused (DESIGN.md section 6)."""
    root, h1, *_ = server.chain()
    server.clients[ORCH].revoke(root)
    response = server.exchange(ARGOCD, h1, audience=CLEANUP)
    refusal(response, 400, "invalid_request", "ancestor_revoked")
    denied = [r for r in server.stack.audit.query(decision="deny")
              if r.reason == "ancestor_revoked" and r.performed_by == ARGOCD]
    record = denied[-1]
    assert record.on_behalf_of == "user:sam"
    assert record.chain == ("agent:infrabot", "user:sam")
    assert record.jti == unverified_claims(h1)["jti"]
    assert record.run_id == unverified_claims(h1)["ctx"]["run_id"]
