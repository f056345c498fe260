"""RFC 8414 metadata, the RFC 7517 key set (RFC 7638 thumbprints as ``kid``), the OpenAPI
document, and signing-key rotation while the server runs."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from orchestrator.authserver import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE
from orchestrator.keystore import KeyRing

from .conftest import ARGOCD, INFRABOT, AuthServer, refusal, serve, unverified_header

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                      "OKP": ("crv", "kty", "x")}


def rfc7638(jwk: dict[str, Any]) -> str:
    """RFC 7638 section 3: SHA-256 over the required members, sorted, no whitespace."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def jwks_kids(server: AuthServer) -> list[str]:
    return [key["kid"] for key in server.http.get(f"{server.url}/jwks.json").json()["keys"]]


@pytest.fixture(scope="module")
def metadata(server: AuthServer) -> dict[str, Any]:
    response = server.http.get(f"{server.url}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_metadata_names_the_endpoints(server: AuthServer, metadata: dict[str, Any]) -> None:
    assert metadata["issuer"] == server.issuer == server.url
    assert metadata["token_endpoint"] == f"{server.url}/token"
    assert metadata["jwks_uri"] == f"{server.url}/jwks.json"
    assert metadata["introspection_endpoint"] == f"{server.url}/introspect"
    assert metadata["revocation_endpoint"] == f"{server.url}/revoke"


def test_metadata_names_the_grants_and_client_authentication(metadata: dict[str, Any]) -> None:
    assert set(metadata["grant_types_supported"]) == {GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER}
    for endpoint in ("token", "introspection", "revocation"):
        assert metadata[f"{endpoint}_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(alg.startswith("HS")
                   for alg in metadata["token_endpoint_auth_signing_alg_values_supported"])
    assert metadata["access_token_signing_alg_values_supported"] == ["ES256"]
    assert metadata["max_delegation_depth"] == 4
    assert metadata["subject_token_types_supported"] == [  # no identity provider trusted
        "urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:jwt"]


def test_metadata_lists_the_service_scopes(metadata: dict[str, Any]) -> None:
    scopes = metadata["scopes_supported"]
    assert "urn:infra:infrastructure:clean" in scopes
    assert "urn:infra:secrets:manage" not in scopes  # held by Sam, used by no service
    assert scopes == sorted(scopes)


def test_metadata_endpoints_answer(server: AuthServer, metadata: dict[str, Any]) -> None:
    assert server.http.get(metadata["jwks_uri"]).status_code == 200
    for name in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        refusal(server.http.post(metadata[name], data={"token": "x", "grant_type": "x"}),
                *((400, "unsupported_grant_type", "unsupported_grant_type")
                  if name == "token_endpoint" else
                  (401, "invalid_client", "client_authentication_missing")))


def test_jwks_kids_are_rfc7638_thumbprints_without_private_members(server: AuthServer) -> None:
    response = server.http.get(f"{server.url}/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys
    for jwk in keys:
        assert jwk["kid"] == rfc7638(jwk)
        assert not PRIVATE_MEMBERS & set(jwk)
        assert jwk["use"] == "sig"
        assert jwk["alg"] == "ES256" and jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert server.key.kid in [k["kid"] for k in keys]


def test_an_issued_token_verifies_with_the_published_key(server: AuthServer) -> None:
    token = server.root()["access_token"]
    keys = {k["kid"]: k for k in server.http.get(f"{server.url}/jwks.json").json()["keys"]}
    jwk = keys[unverified_header(token)["kid"]]
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"],
                        audience=server.issuer, issuer=server.issuer)
    assert claims["sub"] == "user:sam"


def test_openapi_lists_the_endpoints(server: AuthServer) -> None:
    response = server.http.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/token", "/introspect", "/revoke", "/revocations"):
        assert "post" in paths[path]
        body = paths[path]["post"]["requestBody"]["content"]
        assert "application/x-www-form-urlencoded" in body
    assert "subject_token" in (paths["/token"]["post"]["requestBody"]["content"]
                               ["application/x-www-form-urlencoded"]["schema"]["properties"])
    assert "/.well-known/oauth-authorization-server" in paths
    assert "/jwks.json" in paths


def test_no_interactive_docs(server: AuthServer) -> None:
    assert server.http.get(f"{server.url}/docs").status_code == 404


# -- rotation ----------------------------------------------------------------------------------------


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server of its own: rotation changes its key ring for good."""
    with serve(tmp_path_factory.mktemp("rotation")) as srv:
        yield srv


def test_rotation_while_running(fresh_server: AuthServer) -> None:
    server = fresh_server
    old_kid = server.key.kid
    before = server.root()["access_token"]
    new_key = server.stack.keyring.rotate(now=int(time.time()), keep_for_seconds=900)
    assert new_key.kid != old_kid
    assert set(jwks_kids(server)) == {old_kid, new_key.kid}
    handed = server.clients[INFRABOT].exchange(before, audience=ARGOCD)["access_token"]
    assert unverified_header(handed)["kid"] == new_key.kid
    assert unverified_header(server.root()["access_token"])["kid"] == new_key.kid
    assert server.introspect(before).json()["active"] is True
    assert server.introspect(handed).json()["active"] is True


def test_rotation_by_another_process_is_picked_up(fresh_server: AuthServer) -> None:
    server = fresh_server
    before = server.root()["access_token"]
    other = KeyRing.open(server.settings.keys_dir / "signing", "ES256", now=int(time.time()))
    new_kid = other.rotate(now=int(time.time()), keep_for_seconds=900).kid
    after = server.root()["access_token"]
    assert unverified_header(after)["kid"] == new_kid
    assert new_kid in jwks_kids(server)
    assert server.clients[INFRABOT].exchange(before, audience=ARGOCD)["scope"]


def test_a_retired_key_no_longer_verifies(fresh_server: AuthServer) -> None:
    """Regression: the server verified with a key past its retirement until something else
    (an issuance, a JWKS fetch) reloaded the key ring."""
    server = fresh_server
    old_kid = server.key.kid
    before = server.root()["access_token"]
    now = int(time.time())
    # Another process rotates and retires the old key at once (a compromised key).
    other = KeyRing.open(server.settings.keys_dir / "signing", "ES256", now=now)
    other.rotate(now=now - 100, keep_for_seconds=10)
    assert server.introspect(before).json() == {"active": False}
    refusal(server.exchange(INFRABOT, before, audience=ARGOCD), 400, "invalid_request",
            "unknown_kid")
    assert old_kid not in jwks_kids(server)
