"""The token endpoint roots a run in a trusted provider's token (RFC 8693, the orchestrator as
the client), over real HTTP on loopback: the root token, the chain from it, and each refusal
with its exact OAuth error, reason and audit record."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.authserver import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_JWT
from orchestrator.identity import Context, make_assertion
from tests.authserver.conftest import (
    ARGOCD,
    INFRABOT,
    ORCH,
    AuthServer,
    refusal,
    serve,
    unverified_claims,
)
from tests.federation._idp import HEADERS, IdPServer, keycloak_claims, okta_claims
from tests.federation.conftest import providers, workflows_with

NEEDED = ["urn:infra:deploy:create", "urn:infra:monitoring:read", "urn:infra:repo:read"]


@pytest.fixture(scope="module")
def server(idp: IdPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    tmp = tmp_path_factory.mktemp("federated")
    entries = providers(idp, okta={"inverted_act": True})
    with serve(tmp / "state", workflows_dir=workflows_with(tmp / "workflows", entries)) as srv:
        yield srv


def ctx() -> Context:
    return Context(trigger="user_request", environment="staging", repository="acme/service-x",
                   commit="9f2c1e7", run_id=f"run-{uuid.uuid4().hex[:12]}")


def kc_token(idp: IdPServer, **kw: Any) -> str:
    key = idp.vendors["keycloak"].keys[0]
    return key.sign(HEADERS["keycloak"](key), keycloak_claims(idp, **kw))


def form(server: AuthServer, user_token: str, *, client: str = ORCH,
         run: Context | None = None, **fields: str) -> dict[str, str]:
    actor = make_assertion(server.stack.clients[client], issuer=client, subject=client,
                           audience=f"{server.url}/token", now=int(time.time()),
                           extra={"ctx": (run or ctx()).model_dump()})
    base = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": user_token,
            "subject_token_type": TOKEN_TYPE_JWT, "actor_token": actor,
            "actor_token_type": TOKEN_TYPE_JWT, "scope": " ".join(NEEDED),
            "audience": INFRABOT}
    return {**server.auth(client), **base, **fields}


def test_a_trusted_providers_token_roots_a_chain_that_records_where_it_came_from(
        server: AuthServer, idp: IdPServer) -> None:
    user_token = kc_token(idp, roles=("infra-deployer",), scope="openid urn:infra:repo:read")
    mark = server.audit_mark()
    run = ctx()
    root = server.clients[ORCH].user_root_token(user_token, NEEDED, run, INFRABOT)
    claims = unverified_claims(root["access_token"])
    assert claims["sub"] == "user:sam"
    assert sorted(claims["scope"].split()) == sorted(NEEDED)
    assert claims["ctx"] == {**run.model_dump(), "idp": idp.issuer("keycloak"),
                             "idp_subject": unverified_claims(user_token)["sub"]}
    h1 = server.clients[INFRABOT].exchange(root["access_token"], audience=ARGOCD)
    call = server.clients[ARGOCD].exchange(h1["access_token"], resource=server.service("github"))
    assert unverified_claims(call["access_token"])["ctx"] == claims["ctx"]  # kept along the chain
    records = server.records_since(mark)
    assert [(r.action, r.decision, r.reason) for r in records] == [
        ("root_grant", "allow", "ok"), ("token_exchange", "allow", "ok"),
        ("token_exchange", "allow", "ok")]
    assert {r.principal for r in records} == {f"user:sam (via {idp.issuer('keycloak')})"}
    server.assert_not_stored(user_token)


def test_an_id_token_roots_a_run_as_the_metadata_says(server: AuthServer, idp: IdPServer) -> None:
    id_type = "urn:ietf:params:oauth:token-type:id_token"
    assert id_type in server.http.get(
        f"{server.url}/.well-known/oauth-authorization-server").json()[
        "subject_token_types_supported"]
    user_token = kc_token(idp, roles=("infra-deployer",))
    response = server.post("/token", form(server, user_token, subject_token_type=id_type))
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["sub"] == "user:sam"


def test_a_role_that_would_widen_the_directory_is_not_granted(
        server: AuthServer, idp: IdPServer) -> None:
    """Alex asserts the deployer role at the IdP; the directory does not let alex deploy."""
    user_token = kc_token(idp, user="alex", roles=("infra-deployer",))
    root = server.clients[ORCH].user_root_token(user_token, NEEDED, ctx(), INFRABOT)
    assert root["scope"] == "urn:infra:monitoring:read"


def test_the_articles_inverted_shape_is_normalised_with_a_warning_in_the_audit(
        server: AuthServer, idp: IdPServer) -> None:
    key = idp.vendors["okta"].keys[0]
    claims = okta_claims(idp, login="infrabot-agent@acme.example", groups=("Infra-Deployers",),
                         act={"sub": "sam@acme.example"})
    mark = server.audit_mark()
    root = server.clients[ORCH].user_root_token(key.sign(HEADERS["okta"](key), claims), NEEDED,
                                                ctx(), INFRABOT)
    assert unverified_claims(root["access_token"])["sub"] == "user:sam"
    assert unverified_claims(root["access_token"])["ctx"]["idp_subject"] == "sam@acme.example"
    (record,) = server.records_since(mark)
    assert (record.action, record.decision, record.reason) == \
        ("root_grant", "allow", "inverted_act_normalised")


@pytest.mark.parametrize(("change", "status", "error", "reason"), [
    ({"aud": "api://another-api"}, 400, "invalid_request", "audience_mismatch"),
    ({"exp": int(time.time()) - 60, "iat": int(time.time()) - 900}, 400, "invalid_request",
     "token_expired"),
    ({"preferred_username": "mallory"}, 400, "invalid_grant", "unknown_user"),
    ({"act": {"sub": "sam"}}, 400, "invalid_request", "inverted_chain"),
])
def test_refusals_of_the_subject_token(server: AuthServer, idp: IdPServer, change: dict[str, Any],
                                       status: int, error: str, reason: str) -> None:
    user_token = kc_token(idp, roles=("infra-deployer",), **change)
    mark = server.audit_mark()
    refusal(server.post("/token", form(server, user_token)), status, error, reason)
    server.assert_denied(mark, reason, user_token)


def test_only_the_trusted_orchestrator_may_root_a_run_in_a_users_token(
        server: AuthServer, idp: IdPServer) -> None:
    user_token = kc_token(idp, roles=("infra-deployer",))
    mark = server.audit_mark()
    refusal(server.post("/token", form(server, user_token, client=INFRABOT)), 400,
            "unauthorized_client", "client_not_trusted")
    server.assert_denied(mark, "client_not_trusted", user_token)


def test_the_run_context_is_required(server: AuthServer, idp: IdPServer) -> None:
    fields = form(server, kc_token(idp, roles=("infra-deployer",)))
    del fields["actor_token"], fields["actor_token_type"]
    refusal(server.post("/token", fields), 400, "invalid_request", "missing_context")


def test_the_orchestrator_cannot_claim_a_provider_without_its_token(
        server: AuthServer, idp: IdPServer) -> None:
    """The RFC 7523 grant's ctx may not say idp: only a verified provider token says that."""
    forged = Context.model_validate({**ctx().model_dump(), "idp": idp.issuer("keycloak"),
                                     "idp_subject": "someone"})
    refusal(server.post("/token", {**server.auth(ORCH), **server.grant_form("user:sam", forged)}),
            400, "invalid_grant", "invalid_context")


def test_an_unsupported_subject_token_type(server: AuthServer, idp: IdPServer) -> None:
    fields = form(server, kc_token(idp, roles=("infra-deployer",)),
                  subject_token_type="urn:ietf:params:oauth:token-type:saml2")
    refusal(server.post("/token", fields), 400, "invalid_request",
            "unsupported_subject_token_type")


def test_an_outage_never_shows_the_providers_url_credentials(idp: IdPServer,
                                                              tmp_path: Path) -> None:
    where = idp.base.replace("http://", "http://svc:Jwk5Passw0rd@")
    entries = providers(idp, keycloak={"discovery_url": f"{where}/nowhere?api_key=K3Yk3y"})
    with serve(tmp_path / "state", workflows_dir=workflows_with(tmp_path / "wf", entries)) as srv:
        response = srv.post("/token", form(srv, kc_token(idp, roles=("infra-deployer",))))
        refusal(response, 503, "temporarily_unavailable", "jwks_unavailable")
        assert response.json()["error_description"] == f"{idp.base}/nowhere answered 404"
        records = srv.records_since(0)
    assert "Jwk5Passw0rd" not in response.text and "K3Yk3y" not in response.text
    assert not [r for r in records if "Jwk5Passw0rd" in str(r) or "K3Yk3y" in str(r)]


def test_a_provider_keys_outage_fails_closed(idp: IdPServer, tmp_path: Path) -> None:
    entries = providers(idp, keycloak={"discovery_url": f"{idp.base}/nowhere"})
    with serve(tmp_path / "state", workflows_dir=workflows_with(tmp_path / "wf", entries)) as srv:
        response = srv.post("/token", form(srv, kc_token(idp, roles=("infra-deployer",))))
        refusal(response, 503, "temporarily_unavailable", "jwks_unavailable")

