"""Every way the RFC 7523 root grant is refused, and the exact audit record it leaves (action,
decision, reason, status, run id). A refusal after the client authenticated and the grant
assertion verified names the run its ``ctx`` names, even when another field of that context is
refused; one before (an unknown or untrusted client, a bad or expired assertion) names none,
and neither does a context whose run id is not one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.authserver import GRANT_JWT_BEARER
from orchestrator.errors import Unavailable
from orchestrator.identity import MemoryRevocationStore, SigningKey, Standing, make_assertion

from .conftest import INFRABOT, ORCH, WORKFLOW_SCOPES, AuthServer, refusal, serve

Record = tuple[str, str, str, int | None, str | None]


def grant(srv: AuthServer, ctx: Any, *, user: str = "user:sam", client: str = ORCH,
          key: SigningKey | None = None, issued: int | None = None,
          scopes: list[str] | None = None, audience: str = INFRABOT) -> dict[str, str]:
    """A root grant form: ``client``'s authentication and an assertion (by the orchestrator's
    key unless ``key``) naming ``user`` and carrying ``ctx`` as it is (a dict, anything)."""
    assertion = make_assertion(key or srv.stack.clients[ORCH], issuer=ORCH, subject=user,
                               audience=f"{srv.url}/token",
                               now=int(time.time()) if issued is None else issued, ttl=60,
                               extra={"ctx": ctx})
    return {**srv.auth(client), "grant_type": GRANT_JWT_BEARER, "assertion": assertion,
            "scope": " ".join(scopes or WORKFLOW_SCOPES), "audience": audience}


def refused(srv: AuthServer, form: dict[str, str], status: int, error: str,
            reason: str) -> Record:
    """Post ``form``, check the answer; the one record it left: its fields."""
    mark = srv.audit_mark()
    refusal(srv.post("/token", form), status, error, reason)
    record = srv.assert_denied(mark, reason, form["assertion"], form["client_assertion"])
    return record.action, record.decision, record.reason, record.status, record.run_id


def run_ctx(srv: AuthServer, **fields: Any) -> dict[str, Any]:
    return {**srv.ctx().model_dump(), **fields}


# (what, the form's ctx fields, its other arguments, status, error, reason, names the run)
Case = tuple[dict[str, Any], Callable[[AuthServer], dict[str, Any]], int, str, str, bool]
CASES: dict[str, Case] = {
    # refused after the assertion verified: the record names the run
    "unknown user": ({}, lambda s: {"user": "user:former-employee"}, 400, "invalid_grant",
                     "unknown_user", True),
    "scope not held": ({}, lambda s: {"user": "user:alex", "scopes": ["urn:infra:deploy:create"]},
                       400, "invalid_scope", "no_grantable_scope", True),
    "unknown first agent": ({}, lambda s: {"audience": "agent:nobody"}, 400, "invalid_target",
                            "unknown_audience", True),
    "one bad context field": ({"environment": "prod env"}, lambda s: {}, 400, "invalid_grant",
                              "invalid_context", True),
    "a context claiming a provider": ({"idp": "https://idp.example", "idp_subject": "someone"},
                                      lambda s: {}, 400, "invalid_grant", "invalid_context", True),
    # refused after it verified, but no run id to name
    "a run id that is not one": ({"run_id": "run 1; drop"}, lambda s: {}, 400, "invalid_grant",
                                 "invalid_context", False),
    "a context without a run id": ({"run_id": None}, lambda s: {}, 400, "invalid_grant",
                                   "invalid_context", False),
    # refused before the assertion verified: nothing read from it
    "signed by another key": ({}, lambda s: {"key": s.stack.clients[INFRABOT]}, 400,
                              "invalid_grant", "unknown_key", False),
    "expired": ({}, lambda s: {"issued": int(time.time()) - 600}, 400, "invalid_grant",
                "assertion_expired", False),
    "an untrusted client": ({}, lambda s: {"client": INFRABOT}, 400, "unauthorized_client",
                            "client_not_trusted", False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_refusal_of_a_root_grant_is_one_exact_record(server: AuthServer,
                                                          name: str) -> None:
    fields, extra, status, error, reason, names_run = CASES[name]
    ctx = {k: v for k, v in run_ctx(server, **fields).items() if v is not None}
    expected_run = ctx.get("run_id") if names_run else None
    action = "root_grant"
    assert refused(server, grant(server, ctx, **extra(server)), status, error, reason) == (
        action, "deny", reason, status, expected_run)
    if ctx.get("run_id") and isinstance(ctx["run_id"], str):
        named = [(r.action, r.decision, r.reason, r.status)
                 for r in server.stack.audit.query(run_id=ctx["run_id"])]
        assert named == ([(action, "deny", reason, status)] if names_run else [])


def test_a_grant_without_a_ctx_names_no_run(server: AuthServer) -> None:
    form = grant(server, None)
    assert refused(server, form, 400, "invalid_grant", "missing_context") == (
        "root_grant", "deny", "missing_context", 400, None)


def test_a_replayed_grant_names_its_run(server: AuthServer) -> None:
    ctx = run_ctx(server)
    form = grant(server, ctx)
    assert server.post("/token", form).status_code == 200
    form = {**form, **server.auth(ORCH)}  # a fresh client assertion, the same grant assertion
    assert refused(server, form, 400, "invalid_grant", "assertion_replayed") == (
        "root_grant", "deny", "assertion_replayed", 400, ctx["run_id"])


def test_an_unknown_client_is_refused_before_any_run_is_read(server: AuthServer) -> None:
    form = {**grant(server, run_ctx(server)),
            **server.auth("client:nobody", key=server.stack.clients[ORCH])}
    mark = server.audit_mark()
    refusal(server.post("/token", form), 401, "invalid_client", "unknown_client")
    record = server.assert_denied(mark, "unknown_client", form["assertion"])
    assert (record.action, record.decision, record.reason, record.status, record.run_id) == (
        "token", "deny", "unknown_client", 401, None)


# -- the registry down ------------------------------------------------------------------------------

class FlakyRegistry(MemoryRevocationStore):
    """The in-process registry, down for what ``down`` names: the grant assertion's one-time
    claim (``grant``) or the user's standing (``standing``); a client's claim still works."""

    down: frozenset[str] = frozenset()

    def claim_once(self, key: str, *, ttl: int, issued_at: int | None = None) -> bool:
        if "grant" in self.down and key.startswith("grant:"):
            raise Unavailable("revocation registry unreachable", reason="revocation_unavailable")
        return super().claim_once(key, ttl=ttl, issued_at=issued_at)

    def standing(self, user: str) -> Standing:
        if "standing" in self.down:
            raise Unavailable("revocation registry unreachable", reason="revocation_unavailable")
        return super().standing(user)


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[AuthServer, FlakyRegistry]]:
    registry = FlakyRegistry()
    with serve(tmp_path_factory.mktemp("flaky-registry"), revocation=registry) as srv:
        yield srv, registry


@pytest.mark.parametrize("down", ["grant", "standing"])
def test_a_registry_down_after_the_assertion_verified_names_the_run(
        flaky: tuple[AuthServer, FlakyRegistry], down: str) -> None:
    srv, registry = flaky
    ctx = run_ctx(srv)
    registry.down = frozenset({down})
    try:
        record = refused(srv, grant(srv, ctx), 503, "temporarily_unavailable",
                         "revocation_unavailable")
    finally:
        registry.down = frozenset()
    assert record == ("root_grant", "deny", "revocation_unavailable", 503, ctx["run_id"])


def test_a_registry_down_before_the_client_authenticated_names_no_run(
        registry_down: AuthServer) -> None:
    ctx = run_ctx(registry_down)
    form = grant(registry_down, ctx)
    mark = registry_down.audit_mark()
    response = registry_down.post("/token", form)
    assert response.status_code == 503, response.text
    [record] = registry_down.records_since(mark)
    assert (record.action, record.decision, record.status, record.run_id) == (
        "token", "deny", 503, None)
    assert registry_down.stack.audit.query(run_id=ctx["run_id"]) == []
