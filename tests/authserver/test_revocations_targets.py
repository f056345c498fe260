"""``POST /revocations`` takes only a target it can name: a ``jti`` of the token id's shape, a
``run_id`` of the context's shape, a ``user`` the directory knows in its ``user:<name>`` form,
a ``jkt`` of an RFC 7638 thumbprint's shape.
Anything else is refused 400 ``invalid_request`` with its reason before anything is written to
the registry, and audited as a ``deny`` naming the target only as safe text. A well-formed
``jti`` or run id the server has not seen is still revoked: the server keeps no list of issued
tokens, and a run may be revoked before its root is issued (docs/identity.md)."""

from __future__ import annotations

import os

import pytest
import redis

from orchestrator.registry import RedisRevocationStore
from tests._redis import DEFAULT_TEST_REDIS_URL

from .conftest import ORCH, AuthServer, refusal, unverified_claims

INACTIVE = {"active": False}


def _registry_keys(server: AuthServer) -> set[bytes] | None:
    """Every key of the Redis registry but the client assertions' one-time claims and when its
    memory began (None on the in-process registry)."""
    if not isinstance(server.stack.revocation, RedisRevocationStore):
        return None
    url = os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    with redis.Redis.from_url(url, socket_timeout=1.0) as client:
        keys: list[bytes] = client.keys("*")  # type: ignore[assignment]
    return {k for k in keys if not k.startswith(b"infrabot:once:")
            and k != b"infrabot:memory_began"}


def _refused(server: AuthServer, target: dict[str, str], reason: str, resource: str) -> None:
    """The target is refused with ``reason``, one deny record names it as ``resource``, and the
    registry is left as it was."""
    before = _registry_keys(server)
    mark = server.audit_mark()
    form = {**server.auth(ORCH), **target}
    refusal(server.post("/revocations", form), 400, "invalid_request", reason)
    record = server.assert_denied(mark, reason, form["client_assertion"])
    assert (record.action, record.performed_by, record.status, record.resource) == (
        "revoke", ORCH, 400, resource)
    assert _registry_keys(server) == before


@pytest.mark.parametrize(("user", "resource"), [
    ("sam", "user:sam"),  # the directory's form is user:sam
    ("user:sam ", "user:[unrecognised]"),
    ("USER:sam", "user:USER:sam"),
    ("user:nobody", "user:user:nobody"),
    ("agent:infrabot", "user:agent:infrabot"),
    ("user:s\u00e4m", "user:[unrecognised]"),
])
def test_a_user_the_directory_does_not_know_is_refused(store_server: AuthServer, user: str,
                                                      resource: str) -> None:
    server = store_server
    root = server.root()["access_token"]
    _refused(server, {"user": user}, "unknown_user", resource)
    assert server.introspect(root).json()["active"] is True


def test_a_malformed_jti_is_refused(store_server: AuthServer) -> None:
    server = store_server
    root, h1, *_ = server.chain()
    jti = unverified_claims(h1)["jti"]
    for value, resource in ((f"{jti} ", "jti:[unrecognised]"), (f" {jti}", "jti:[unrecognised]"),
                            ("../../x", "jti:../../x"), ("short", "jti:short"),
                            ("a" * 65, f"jti:{'a' * 65}"), (f"{jti}\n", "jti:[unrecognised]"),
                            (root, "jti:[unrecognised]")):
        _refused(server, {"jti": value}, "malformed_jti", resource)
    assert server.introspect(h1).json()["active"] is True


@pytest.mark.parametrize(("run_id", "resource"), [
    ("run-\u2603", "run_id:[unrecognised]"),
    ("run-4db1340b ", "run_id:[unrecognised]"),
    ("../run", "run_id:../run"),
    ("run id", "run_id:[unrecognised]"),
    ("r" * 129, "run_id:[unrecognised]"),
    ("run-x*", "run_id:run-x*"),
])
def test_a_malformed_run_id_is_refused(store_server: AuthServer, run_id: str,
                                       resource: str) -> None:
    _refused(store_server, {"run_id": run_id}, "malformed_run_id", resource)


@pytest.mark.parametrize(("jkt", "resource"), [
    ("A" * 42, f"jkt:{'A' * 42}"),
    ("A" * 44, f"jkt:{'A' * 44}"),
    ("A" * 42 + "=", f"jkt:{'A' * 42}="),  # a thumbprint is unpadded base64url
    ("A" * 42 + "+", f"jkt:{'A' * 42}+"),
    ("A" * 43 + " ", "jkt:[unrecognised]"),
    ("", None),  # an empty value names no target
])
def test_a_malformed_jkt_is_refused(store_server: AuthServer, jkt: str,
                                    resource: str | None) -> None:
    if resource is None:
        form = {**store_server.auth(ORCH), "jkt": jkt}
        refusal(store_server.post("/revocations", form), 400, "invalid_request",
                "target_required")
        return
    _refused(store_server, {"jkt": jkt}, "malformed_jkt", resource)


def test_the_refusal_names_no_value_in_its_description(server: AuthServer) -> None:
    form = {**server.auth(ORCH), "run_id": "run-SECRETISH*"}
    body = refusal(server.post("/revocations", form), 400, "invalid_request", "malformed_run_id")
    assert "SECRETISH" not in body["error_description"]


def test_a_well_formed_unseen_jti_or_run_is_revoked_ahead(store_server: AuthServer) -> None:
    """Documented: the server cannot tell a token or run it has not seen from one to come."""
    server = store_server
    ctx = server.ctx()
    assert server.clients[ORCH].revoke_by(run_id=ctx.run_id) == {"revoked": "run",
                                                                 "run_id": ctx.run_id}
    root = server.root(ctx=ctx)["access_token"]
    assert server.introspect(root).json() == INACTIVE
    assert server.clients[ORCH].revoke_by(jti="abcdefgh12345678") == {
        "revoked": "jti", "jti": "abcdefgh12345678"}


def test_a_known_user_is_still_revoked(store_server: AuthServer) -> None:
    server = store_server
    robin = server.root(user="user:robin")["access_token"]
    mark = server.audit_mark()
    assert server.clients[ORCH].revoke_by(user="user:robin")["revoked"] == "user"
    assert [(r.decision, r.reason, r.resource) for r in server.records_since(mark)] == [
        ("allow", "user_revoked", "user:user:robin")]
    assert server.introspect(robin).json() == INACTIVE
