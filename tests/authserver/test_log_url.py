"""The ``log_url`` claim resolves: GET /audit?jti=... shows a token's audit records to a holder
of that token or of a token exchanged from it, and to nobody else."""

from __future__ import annotations

import httpx
import pytest

from .conftest import AuthServer, refusal, unverified_claims


def _get(server: AuthServer, jti: str, bearer: str | None, scheme: str = "Bearer",
         **headers: str) -> httpx.Response:
    if bearer is not None:
        headers["Authorization"] = f"{scheme} {bearer}"
    return server.http.get(f"{server.url}/audit", params={"jti": jti}, headers=headers)


def test_log_url_points_at_the_audit_endpoint(server: AuthServer) -> None:
    root, _h1, _h2, aws = server.chain()
    claims = unverified_claims(aws)
    assert claims["log_url"] == f"{server.url}/audit?jti={claims['jti']}"
    response = _get(server, unverified_claims(root)["jti"], aws)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    records = response.json()["records"]
    assert [r["action"] for r in records] == ["root_grant"]
    assert records[0]["on_behalf_of"] == "user:sam"
    assert root not in response.text and aws not in response.text


def test_a_token_sees_its_own_records(server: AuthServer) -> None:
    *_, aws = server.chain()
    jti = unverified_claims(aws)["jti"]
    records = _get(server, jti, aws).json()["records"]
    assert {r["action"] for r in records} == {"token_exchange"}
    assert all(r["jti"] == jti for r in records)


def test_no_bearer_is_a_bare_challenge(server: AuthServer) -> None:
    *_, aws = server.chain()
    response = _get(server, unverified_claims(aws)["jti"], None)
    refusal(response, 401, "invalid_token", "missing_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="authserver"'


def test_a_token_outside_the_chain_is_refused(server: AuthServer) -> None:
    root, *_ = server.chain()
    *_, other = server.chain()
    response = _get(server, unverified_claims(root)["jti"], other)
    refusal(response, 403, "insufficient_scope", "not_in_chain")


def test_an_invalid_bearer_is_refused(server: AuthServer) -> None:
    response = _get(server, "abcdefgh12", "not.a.token")
    refusal(response, 401, "invalid_token", "malformed")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_revoked_bearer_is_refused(server: AuthServer) -> None:
    root, *_, aws = server.chain()
    server.clients["client:orchestrator"].revoke(root)
    response = _get(server, unverified_claims(aws)["jti"], aws)
    refusal(response, 401, "invalid_token", "ancestor_revoked")


def test_a_malformed_jti_or_header_is_a_client_error(server: AuthServer) -> None:
    *_, aws = server.chain()
    response = _get(server, "x", aws)
    refusal(response, 400, "invalid_request", "invalid_parameter")
    assert response.json()["error_description"] == "query.jti is invalid"
    response = server.http.get(f"{server.url}/audit", headers={"Authorization": f"Bearer {aws}"})
    refusal(response, 400, "invalid_request", "invalid_parameter")
    assert response.json()["error_description"] == "query.jti is required"
    response = server.http.get(f"{server.url}/audit", params={"jti": "abcdefgh12"},
                               headers={"Authorization": "Basic Zm9vOmJhcg=="})
    refusal(response, 400, "invalid_request", "malformed_authorization")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_read_in_any_letter_case(server: AuthServer, scheme: str) -> None:
    *_, aws = server.chain()
    jti = unverified_claims(aws)["jti"]
    response = _get(server, jti, aws, scheme=scheme)
    assert response.status_code == 200, response.text
    assert {r["jti"] for r in response.json()["records"]} == {jti}


@pytest.mark.parametrize("value", ["Bearer", "bearer", "Bearerx abc", "Token abc"])
def test_a_bearer_header_without_a_credential_or_another_scheme_is_malformed(
        server: AuthServer, value: str) -> None:
    response = server.http.get(f"{server.url}/audit", params={"jti": "abcdefgh12"},
                               headers={"Authorization": value})
    refusal(response, 400, "invalid_request", "malformed_authorization")
