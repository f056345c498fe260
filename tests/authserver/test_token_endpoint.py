"""Every refusal path of ``/token``: status, RFC code and reason, and a ``deny`` audit record with
that reason that holds none of the tokens or assertions sent."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from orchestrator.authserver import GRANT_JWT_BEARER, TOKEN_TYPE_JWT
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    generate_private_key,
    make_assertion,
    new_jti,
    signing_key_of,
)
from tests._redis import sends_and_verifies

from .conftest import (
    ARGOCD,
    CLEANUP,
    INFRABOT,
    ORCH,
    WORKFLOW_SCOPES,
    AuthServer,
    refusal,
    serve,
    sign_raw,
    unverified_claims,
)

Form = dict[str, str]

OTHER_KEY = signing_key_of(generate_private_key("ES256"), "ES256")


def _jwts(form: Form) -> list[str]:
    return [v for v in form.values() if v.count(".") == 2 and v.startswith("eyJ")]


def refused(server: AuthServer, form: Form | None, status: int, error: str, reason: str, *,
            send: Callable[[], httpx.Response] | None = None, sent: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    """POST ``form`` (or call ``send``); assert the refusal and its audit record."""
    mark = server.audit_mark()
    response = send() if send is not None else server.post("/token", form)
    body = refusal(response, status, error, reason)
    record = server.assert_denied(mark, reason, *(_jwts(form or {}) + list(sent)))
    assert record.status == status
    assert "eyJ" not in body["error_description"]
    return body


def root_token(server: AuthServer, **kw: Any) -> str:
    token: str = server.root(**kw)["access_token"]
    return token


# -- grant type and client authentication ----------------------------------------------------------


def test_unsupported_grant_type(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), "grant_type": "password", "username": "sam"}
    refused(server, form, 400, "unsupported_grant_type", "unsupported_grant_type")


def test_missing_grant_type(server: AuthServer) -> None:
    refused(server, server.auth(INFRABOT), 400, "invalid_request", "missing_parameter")


def test_missing_client_authentication(server: AuthServer) -> None:
    form = server.exchange_form(root_token(server), audience=ARGOCD)
    refused(server, form, 401, "invalid_client", "client_authentication_missing")


def test_client_secret_instead_of_private_key_jwt(server: AuthServer) -> None:
    form = {**server.exchange_form(root_token(server), audience=ARGOCD),
            "client_id": INFRABOT, "client_secret": "hunter2"}
    refused(server, form, 401, "invalid_client", "client_authentication_missing")


def test_wrong_client_assertion_type(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}
    refused(server, form, 401, "invalid_client", "unsupported_client_assertion_type")


def test_missing_client_assertion(server: AuthServer) -> None:
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_id": INFRABOT,
            **server.exchange_form(root_token(server), audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "missing_parameter")


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b", "a.b.c.d", "eyJ.eyJ.", "é.é.é"])
def test_garbage_assertion(server: AuthServer, garbage: str) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": garbage}
    refused(server, form, 401, "invalid_client", "malformed_assertion")


def test_assertion_signed_by_another_clients_key(server: AuthServer) -> None:
    forged = server.assertion(INFRABOT, key=server.stack.clients[ARGOCD])
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": forged}
    refused(server, form, 401, "invalid_client", "unknown_key")


def test_assertion_signed_by_another_key_under_the_clients_kid(server: AuthServer) -> None:
    """A forger who copies the client's registered kid into the header reaches the signature
    check, which the other key fails."""
    claims = {"iss": INFRABOT, "sub": INFRABOT, "aud": f"{server.url}/token",
              "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": new_jti()}
    forged = sign_raw({"alg": "ES256", "typ": "JWT", "kid": server.stack.clients[INFRABOT].kid},
                      claims, server.stack.clients[ARGOCD])
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": forged}
    refused(server, form, 401, "invalid_client", "assertion_bad_signature")


def test_assertion_signed_by_the_issuers_own_key(server: AuthServer) -> None:
    forged = server.assertion(INFRABOT, key=server.key)
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": forged}
    refused(server, form, 401, "invalid_client", "unknown_key")


def test_expired_assertion(server: AuthServer) -> None:
    stale = server.assertion(INFRABOT, now=int(time.time()) - 600, ttl=60)
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": stale}
    refused(server, form, 401, "invalid_client", "assertion_expired")


def test_assertion_for_another_audience(server: AuthServer) -> None:
    elsewhere = server.assertion(INFRABOT, audience=server.aws)
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": elsewhere}
    refused(server, form, 401, "invalid_client", "assertion_audience_mismatch")


def test_assertion_living_too_long(server: AuthServer) -> None:
    # A minute over the hour: the server measures what is left at the moment it reads the
    # assertion, so one second over turns into exactly the hour when a second ticks between
    # signing and reading (the exact boundary is tested with a fixed clock in test_jws.py).
    forever = server.assertion(INFRABOT, ttl=3660)
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": forever}
    refused(server, form, 401, "invalid_client", "assertion_lifetime_too_long")


def test_replayed_assertion(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD)}
    assert server.post("/token", form).status_code == 200
    refused(server, form, 401, "invalid_client", "assertion_replayed")


def test_unknown_client(server: AuthServer) -> None:
    rogue = make_assertion(OTHER_KEY, issuer="agent:rogue", subject="agent:rogue",
                           audience=f"{server.url}/token", now=int(time.time()))
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": rogue,
            **server.exchange_form(root_token(server), audience=ARGOCD)}
    refused(server, form, 401, "invalid_client", "unknown_client")


def test_client_id_disagreeing_with_the_assertion_issuer(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_id": ARGOCD}
    refused(server, form, 401, "invalid_client", "client_mismatch")


def test_assertion_sub_other_than_iss(server: AuthServer) -> None:
    odd = make_assertion(server.stack.clients[INFRABOT], issuer=INFRABOT, subject=ARGOCD,
                         audience=f"{server.url}/token", now=int(time.time()))
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "client_assertion": odd}
    refused(server, form, 401, "invalid_client", "client_mismatch")


# -- the form itself -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grant_type", "subject_token", "audience", "client_assertion"])
def test_repeated_parameter(server: AuthServer, name: str) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD)}
    pairs = [*form.items(), (name, form[name])]
    refused(server, None, 400, "invalid_request", "repeated_parameter", sent=tuple(_jwts(form)),
            send=lambda: server.post("/token", content=urlencode(pairs), headers={
                "content-type": "application/x-www-form-urlencoded"}))


def test_json_body(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD)}
    refused(server, None, 400, "invalid_request", "unsupported_content_type",
            sent=tuple(_jwts(form)), send=lambda: server.post("/token", json=form))


def test_missing_content_type(server: AuthServer) -> None:
    refused(server, None, 400, "invalid_request", "unsupported_content_type",
            send=lambda: server.post("/token", content=b"grant_type=x"))


def test_body_that_is_not_a_form(server: AuthServer) -> None:
    refused(server, None, 400, "invalid_request", "malformed_form",
            send=lambda: server.post("/token", content=b"\xff\xfe\x00binary\x80",
                                     headers={"content-type": "application/x-www-form-urlencoded"}))


def test_body_over_64_kib(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "scope": "x" * (64 * 1024)}
    refused(server, form, 400, "invalid_request", "body_too_large")


def test_single_parameter_over_16_kib(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form("e" * 20_000, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "parameter_too_large")


# -- the subject token (RFC 8693 2.2.2: an invalid subject_token is invalid_request) --------------


def test_missing_subject_token(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form("", audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "missing_parameter")


def test_unsupported_subject_token_type(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD),
            "subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}
    refused(server, form, 400, "invalid_request", "unsupported_subject_token_type")


def test_expired_subject_token(server: AuthServer) -> None:
    now = int(time.time())
    expired = server.mint(iat=now - 900, exp=now - 300)
    form = {**server.auth(INFRABOT), **server.exchange_form(expired, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "token_expired")


def test_subject_token_expiring_within_the_leeway(server: AuthServer) -> None:
    """Regression: a subject token past its exp but inside the verifier's leeway was exchanged
    for a token born expired (exp before iat, a negative expires_in)."""
    now = int(time.time())
    ending = server.mint(iat=now - 600, exp=now - 2)
    form = {**server.auth(INFRABOT), **server.exchange_form(ending, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "token_expired")


def test_subject_token_for_a_service(server: AuthServer) -> None:
    for_aws = server.chain()[-1]
    form = {**server.auth(CLEANUP), **server.exchange_form(for_aws, resource=server.aws)}
    refused(server, form, 400, "invalid_request", "audience_mismatch")


def test_revoked_subject_token(server: AuthServer) -> None:
    root = root_token(server)
    server.clients[ORCH].revoke(root)
    form = {**server.auth(INFRABOT), **server.exchange_form(root, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "token_revoked")


def test_subject_token_signed_by_an_unknown_key(server: AuthServer) -> None:
    header = {"alg": "ES256", "typ": "at+jwt", "kid": OTHER_KEY.kid}
    forged = server.sign(server.claims(), header=header, key=OTHER_KEY)
    form = {**server.auth(INFRABOT), **server.exchange_form(forged, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "unknown_kid")


def test_subject_token_signed_by_another_key_under_the_issuers_kid(server: AuthServer) -> None:
    forged = server.sign(server.claims(), key=OTHER_KEY)
    form = {**server.auth(INFRABOT), **server.exchange_form(forged, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "bad_signature")


def test_subject_token_may_act_for_another_agent(server: AuthServer) -> None:
    form = {**server.auth(ARGOCD), **server.exchange_form(root_token(server), audience=CLEANUP)}
    refused(server, form, 400, "invalid_request", "may_act_mismatch")


def test_subject_token_without_may_act(server: AuthServer) -> None:
    bare = server.mint(may_act=None)
    form = {**server.auth(INFRABOT), **server.exchange_form(bare, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "may_act_missing")


def test_repeated_actor(server: AuthServer) -> None:
    looped = server.mint(act={"sub": INFRABOT}, client_id=INFRABOT)
    form = {**server.auth(INFRABOT), **server.exchange_form(looped, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "actor_repeated")


@pytest.fixture(scope="module")
def deep_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server whose policy allows at most two actors."""
    with serve(tmp_path_factory.mktemp("max-depth-2"), max_depth=2) as srv:
        yield srv


def test_depth_exceeded(deep_server: AuthServer) -> None:
    server = deep_server
    root = root_token(server)
    h1 = server.clients[INFRABOT].exchange(root, audience=ARGOCD)["access_token"]
    h2 = server.clients[ARGOCD].exchange(h1, audience=CLEANUP)["access_token"]
    assert len(unverified_claims(h2)["ancestors"]) == 2
    form = {**server.auth(CLEANUP), **server.exchange_form(h2, resource=server.aws)}
    refused(server, form, 400, "invalid_request", "max_depth_exceeded")


# -- the target and the scopes ---------------------------------------------------------------------


def test_unknown_resource(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT),
            **server.exchange_form(root_token(server), resource="http://127.0.0.1:1")}
    refused(server, form, 400, "invalid_target", "unknown_resource")


def test_the_authorization_server_is_not_a_resource(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), resource=server.url)}
    refused(server, form, 400, "invalid_target", "unknown_resource")


def test_unknown_audience(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT),
            **server.exchange_form(root_token(server), audience="agent:rogue")}
    refused(server, form, 400, "invalid_target", "unknown_audience")


def test_handoff_not_allowed(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=CLEANUP)}
    refused(server, form, 400, "invalid_target", "handoff_not_allowed")


def test_scope_escalation(server: AuthServer) -> None:
    h2 = server.chain()[2]
    form = {**server.auth(CLEANUP), **server.exchange_form(
        h2, resource=server.aws, scope="urn:infra:secrets:manage")}
    refused(server, form, 400, "invalid_scope", "scope_not_grantable")


def test_scope_of_another_service(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), resource=server.aws, scope="urn:infra:monitoring:read")}
    refused(server, form, 400, "invalid_scope", "scope_not_grantable")


def test_malformed_scope(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), resource=server.aws, scope="admin")}
    refused(server, form, 400, "invalid_scope", "malformed_scope")


def test_both_resource_and_audience(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), resource=server.aws, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "target_required")


def test_neither_resource_nor_audience(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server))}
    refused(server, form, 400, "invalid_request", "target_required")


def test_unsupported_requested_token_type(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), audience=ARGOCD,
        requested_token_type="urn:ietf:params:oauth:token-type:refresh_token")}
    refused(server, form, 400, "invalid_request", "unsupported_requested_token_type")


SHORT_JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize("pasted", ["root", "short"])
def test_a_token_pasted_into_resource_is_refused_and_not_stored(
        server: AuthServer, pasted: str) -> None:
    """Regression: the refused target went into the audit record raw; a short JWT there made the
    record invalid (a 500) and a long one was stored truncated."""
    root = root_token(server)
    value = root if pasted == "root" else SHORT_JWT
    form = {**server.auth(INFRABOT), **server.exchange_form(root, resource=value)}
    mark = server.audit_mark()
    body = refused(server, form, 400, "invalid_target", "unknown_resource", sent=(value,))
    assert value not in body["error_description"]
    assert server.records_since(mark)[0].resource == "[unrecognised]"
    server.assert_not_stored(value[:40])


def test_a_long_audience_is_not_stored(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT),
            **server.exchange_form(root_token(server), audience="agent:" + "x" * 5000)}
    mark = server.audit_mark()
    refused(server, form, 400, "invalid_target", "unknown_audience")
    assert server.records_since(mark)[0].resource == "[unrecognised]"


def test_a_refused_client_is_audited_with_its_target(server: AuthServer) -> None:
    form = server.exchange_form(root_token(server), audience=ARGOCD)
    mark = server.audit_mark()
    refused(server, form, 401, "invalid_client", "client_authentication_missing")
    record = server.records_since(mark)[0]
    assert record.resource == ARGOCD
    assert record.performed_by is None
    assert record.action == "token"


# -- actor_token -----------------------------------------------------------------------------------


def test_actor_token_naming_another_actor(server: AuthServer) -> None:
    argocd_says = server.assertion(ARGOCD)
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), audience=ARGOCD, actor_token=argocd_says,
        actor_token_type=TOKEN_TYPE_JWT)}
    refused(server, form, 400, "invalid_request", "actor_mismatch")


def test_actor_token_that_does_not_verify(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), audience=ARGOCD,
        actor_token=server.assertion(INFRABOT, key=server.stack.clients[ARGOCD]),
        actor_token_type=TOKEN_TYPE_JWT)}
    refused(server, form, 400, "invalid_request", "invalid_actor_token")


def test_actor_token_type_without_actor_token(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), audience=ARGOCD, actor_token_type=TOKEN_TYPE_JWT)}
    refused(server, form, 400, "invalid_request", "missing_parameter")


def test_own_actor_token_is_accepted(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root_token(server), audience=ARGOCD, actor_token=server.assertion(INFRABOT),
        actor_token_type=TOKEN_TYPE_JWT)}
    response = server.post("/token", form)
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["act"] == {"sub": INFRABOT}


# -- the root grant (RFC 7523) ---------------------------------------------------------------------


def test_agent_using_the_jwt_bearer_grant(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.grant_form("user:sam", server.ctx())}
    form["assertion"] = make_assertion(server.stack.clients[INFRABOT], issuer=INFRABOT,
                                       subject="user:sam", audience=f"{server.url}/token",
                                       now=int(time.time()))
    refused(server, form, 400, "unauthorized_client", "client_not_trusted")


def test_root_grant_for_a_disabled_user(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:former-employee", server.ctx(),
                                                     scopes=["urn:infra:monitoring:read"])}
    body = refused(server, form, 400, "invalid_grant", "unknown_user")
    assert body["error_description"]


def test_root_grant_for_an_unknown_user(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:nobody", server.ctx())}
    refused(server, form, 400, "invalid_grant", "unknown_user")


def test_root_grant_audit_names_the_user(server: AuthServer) -> None:
    mark = server.audit_mark()
    form = {**server.auth(ORCH), **server.grant_form("user:former-employee", server.ctx())}
    refusal(server.post("/token", form), 400, "invalid_grant", "unknown_user")
    record = server.assert_denied(mark, "unknown_user", *_jwts(form))
    assert record.on_behalf_of == "user:former-employee"
    assert record.performed_by == ORCH
    assert record.action == "root_grant"


def test_root_grant_assertion_replayed(server: AuthServer) -> None:
    grant = server.grant_form("user:sam", server.ctx())
    assert server.post("/token", {**server.auth(ORCH), **grant}).status_code == 200
    form = {**server.auth(ORCH), **grant}
    refused(server, form, 400, "invalid_grant", "assertion_replayed")


def test_root_grant_assertion_signed_by_an_agent(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:sam", server.ctx(),
                                                     key=server.stack.clients[INFRABOT])}
    refused(server, form, 400, "invalid_grant", "unknown_key")


def test_root_grant_assertion_from_another_issuer(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:sam", server.ctx())}
    form["assertion"] = make_assertion(server.stack.clients[INFRABOT], issuer=INFRABOT,
                                       subject="user:sam", audience=f"{server.url}/token",
                                       now=int(time.time()))
    refused(server, form, 400, "invalid_grant", "client_mismatch")


def test_root_grant_without_context(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:sam", server.ctx())}
    form["assertion"] = make_assertion(server.stack.clients[ORCH], issuer=ORCH,
                                       subject="user:sam", audience=f"{server.url}/token",
                                       now=int(time.time()))
    refused(server, form, 400, "invalid_grant", "missing_context")


def test_root_grant_to_an_unknown_agent(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:sam", server.ctx(),
                                                     first_agent="agent:rogue")}
    refused(server, form, 400, "invalid_target", "unknown_audience")


def test_root_grant_with_nothing_grantable(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.grant_form("user:alex", server.ctx(),
                                                     scopes=["urn:infra:deploy:create"])}
    refused(server, form, 400, "invalid_scope", "no_grantable_scope")


def test_root_grant_with_a_client_assertion_replayed_as_grant(server: AuthServer) -> None:
    """The orchestrator's client assertion (sub = itself) is no grant for a user."""
    auth = server.auth(ORCH)
    form = {**auth, **server.grant_form("user:sam", server.ctx())}
    form["assertion"] = server.assertion(ORCH)
    refused(server, form, 400, "invalid_grant", "missing_context")


def test_prod_manual_trigger_drops_write_scopes(server: AuthServer) -> None:
    ctx = server.ctx(trigger="manual", environment="prod")
    form = {**server.auth(ORCH), **server.grant_form("user:sam", ctx)}
    response = server.post("/token", form)
    assert response.status_code == 200, response.text
    granted = set(response.json()["scope"].split(" "))
    assert granted == {"urn:infra:monitoring:read", "urn:infra:repo:read",
                       "urn:infra:infrastructure:read", "urn:infra:incident:read"}
    assert set(unverified_claims(response.json()["access_token"])["scope"].split(" ")) == granted


def test_prod_ci_trigger_keeps_write_scopes(server: AuthServer) -> None:
    response = server.post("/token", {**server.auth(ORCH), **server.grant_form(
        "user:sam", server.ctx(trigger="ci_pipeline"))})
    assert "urn:infra:deploy:create" in response.json()["scope"].split(" ")


def test_manual_prod_root_cannot_regain_writes_by_exchange(server: AuthServer) -> None:
    ctx = server.ctx(trigger="manual", environment="prod")
    root = server.root(ctx=ctx)["access_token"]
    form = {**server.auth(INFRABOT), **server.exchange_form(
        root, audience=ARGOCD, scope="urn:infra:deploy:create")}
    refused(server, form, 400, "invalid_scope", "scope_not_grantable")


def test_jwt_bearer_grant_is_the_rfc7523_urn() -> None:
    assert GRANT_JWT_BEARER == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_an_orchestrator_may_not_exchange(server: AuthServer) -> None:
    form = {**server.auth(ORCH), **server.exchange_form(root_token(server), audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "not_an_agent")


# -- replay under concurrency, on both registries --------------------------------------------------


def accepted_once(server: AuthServer, path: str, form: Form) -> None:
    """``form`` posted 8 times at once: one 200, every other answer a replayed assertion."""
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.post(path, form), range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 7
    for answer in answers:
        if answer.status_code == 401:
            refusal(answer, 401, "invalid_client", "assertion_replayed")


def test_concurrent_replays_of_a_client_assertion_succeed_once(store_server: AuthServer) -> None:
    server = store_server
    accepted_once(server, "/introspect", {**server.auth(ORCH), "token": server.mint()})


def test_concurrent_replays_of_an_exchange_assertion_succeed_once(
        store_server: AuthServer) -> None:
    """The exchange claims its assertion in the round trip that checks its subject token."""
    server = store_server
    accepted_once(server, "/token", {**server.auth(INFRABOT),
                                     **server.exchange_form(root_token(server), audience=ARGOCD)})


def test_an_assertion_is_spent_by_an_exchange_whose_subject_is_refused(
        store_server: AuthServer) -> None:
    server = store_server
    auth = server.auth(INFRABOT)
    bad = {**auth, **server.exchange_form(server.mint(aud=server.aws), audience=ARGOCD)}
    refused(server, bad, 400, "invalid_request", "audience_mismatch")
    good = {**auth, **server.exchange_form(root_token(server), audience=ARGOCD)}
    refused(server, good, 401, "invalid_client", "assertion_replayed")


def test_a_replayed_assertion_is_refused_before_a_revoked_subject(
        store_server: AuthServer) -> None:
    """Refused as an unauthenticated request: no client, no chain in its audit record."""
    server = store_server
    root = root_token(server)
    form = {**server.auth(INFRABOT), **server.exchange_form(root, audience=ARGOCD)}
    assert server.post("/token", form).status_code == 200
    server.clients[ORCH].revoke(root)
    mark = server.audit_mark()
    refusal(server.post("/token", form), 401, "invalid_client", "assertion_replayed")
    denied = server.assert_denied(mark, "assertion_replayed", *_jwts(form))
    assert (denied.action, denied.performed_by, denied.chain) == ("token", None, ())


def test_a_replayed_assertion_is_refused_before_a_subject_that_fails_verification(
        store_server: AuthServer) -> None:
    server = store_server
    auth = server.auth(INFRABOT)
    assert server.post("/token", {**auth, **server.exchange_form(
        root_token(server), audience=ARGOCD)}).status_code == 200
    form = {**auth, **server.exchange_form(server.mint(aud=server.aws), audience=ARGOCD)}
    mark = server.audit_mark()
    refusal(server.post("/token", form), 401, "invalid_client", "assertion_replayed")
    denied = server.assert_denied(mark, "assertion_replayed", *_jwts(form))
    assert (denied.action, denied.performed_by, denied.chain) == ("token", None, ())


def test_a_revoked_subject_spends_the_assertion(store_server: AuthServer) -> None:
    server = store_server
    root = root_token(server)
    server.clients[ORCH].revoke(root)
    form = {**server.auth(INFRABOT), **server.exchange_form(root, audience=ARGOCD)}
    refused(server, form, 400, "invalid_request", "token_revoked")
    refused(server, form, 401, "invalid_client", "assertion_replayed")


@pytest.mark.redis
def test_an_exchange_claims_and_checks_in_one_round_trip_before_the_subject_is_verified(
        redis_url: str, redis_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify the client assertion, send the replay claim and the subject token's revocation
    check together, verify the subject token while Redis answers, then read the answer."""
    server = redis_server
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD)}
    registry = server.stack.auth.revocation
    events = sends_and_verifies(
        monkeypatch, registry._r.connection_pool.connection_class)  # type: ignore[attr-defined]
    assert server.post("/token", form).status_code == 200
    assert events == ["verify", "send", "verify"]


def test_with_the_registry_in_process_nothing_is_read_before_verification(
        server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No round trip to overlap: the subject token's payload is not read before it verifies."""
    import orchestrator.authserver._token_exchange as service_module

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("peek_target called with the in-process registry")

    monkeypatch.setattr(service_module, "peek_target", refuse)
    form = {**server.auth(INFRABOT), **server.exchange_form(root_token(server), audience=ARGOCD)}
    assert server.post("/token", form).status_code == 200


def test_concurrent_replays_of_a_grant_succeed_once(store_server: AuthServer) -> None:
    server = store_server
    grant = server.grant_form("user:sam", server.ctx())
    forms = [{**server.auth(ORCH), **grant} for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda form: server.post("/token", form), forms))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 7
    for answer in answers:
        if answer.status_code == 400:
            refusal(answer, 400, "invalid_grant", "assertion_replayed")


# -- an assertion issued before the replay registry's memory began, on both registries ------------
# The module's in-process registry began when its server started, the Redis one when this test's
# first call found db 15 empty: both well after OLD, and both within an assertion's lifetime of it.

OLD_BY = 250  # seconds: an assertion issued then, living 290 s, is still valid now


def old_assertion(server: AuthServer, client_id: str, **extra: Any) -> str:
    return server.assertion(client_id, now=int(time.time()) - OLD_BY, ttl=OLD_BY + 40, **extra)


@pytest.mark.parametrize("endpoint", ["/token", "/introspect"])
def test_a_client_assertion_issued_before_the_registry_memory_began_is_refused(
        store_server: AuthServer, endpoint: str) -> None:
    """A restart of an unpersisted Redis forgets which assertions were used: one issued before
    it could be a replay, so it is refused (and claims nothing: it is refused the same again)."""
    server = store_server
    subject = root_token(server)
    client = INFRABOT if endpoint == "/token" else ORCH
    body = (server.exchange_form(subject, audience=ARGOCD) if endpoint == "/token"
            else {"token": subject})
    form = {**server.auth(client), "client_assertion": old_assertion(server, client), **body}
    for _ in range(2):
        mark = server.audit_mark()
        refusal(server.post(endpoint, form), 401, "invalid_client", "assertion_predates_registry")
        if endpoint == "/token":  # audited as a request from no authenticated client
            denied = server.assert_denied(mark, "assertion_predates_registry", *_jwts(form))
            assert (denied.action, denied.performed_by, denied.chain) == ("token", None, ())
    fresh = {**server.auth(client), **body}
    assert server.post(endpoint, fresh).status_code == 200


@pytest.mark.parametrize(("iat", "reason"), [
    (None, "malformed_assertion"), (60, "assertion_not_yet_valid")])
def test_a_client_assertion_must_say_when_it_was_issued_and_not_in_the_future(
        store_server: AuthServer, iat: int | None, reason: str) -> None:
    """RFC 7523 lets ``iat`` be left out, and PyJWT accepts any ``iat``; the replay check dates
    the assertion by it, so it is required and may not run ahead of the clock (5 s leeway)."""
    server = store_server
    key = server.stack.clients[INFRABOT]
    now = int(time.time())
    claims = {"iss": INFRABOT, "sub": INFRABOT, "aud": f"{server.url}/token", "exp": now + 60,
              "jti": f"iat-{now}-{iat}-{id(server)}"}
    if iat is not None:
        claims["iat"] = now + iat
    form = {**server.auth(INFRABOT), "client_assertion": sign_raw(
        {"alg": key.alg, "kid": key.kid}, claims, key),
        **server.exchange_form(root_token(server), audience=ARGOCD)}
    refused(server, form, 401, "invalid_client", reason)


def test_a_grant_assertion_issued_before_the_registry_memory_began_is_refused(
        store_server: AuthServer) -> None:
    server = store_server
    root_token(server)  # the registry's memory has begun, whichever it is
    grant = make_assertion(server.stack.clients[ORCH], issuer=ORCH, subject="user:sam",
                           audience=f"{server.url}/token", now=int(time.time()) - OLD_BY,
                           ttl=OLD_BY + 40, extra={"ctx": server.ctx().model_dump()})
    form = {**server.auth(ORCH), "grant_type": GRANT_JWT_BEARER, "assertion": grant,
            "scope": " ".join(WORKFLOW_SCOPES), "audience": INFRABOT}
    refused(server, form, 400, "invalid_grant", "assertion_predates_registry")

