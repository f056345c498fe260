"""An unknown path (404) or method (405) at the authorization server is answered in the project's
error shape ``{error, error_description, reason}``, as every other server answers, not FastAPI's
``{"detail": ...}``; and HEAD is served wherever GET is (RFC 9110 section 9.1): GET's status and
headers, no body."""

from __future__ import annotations

import pytest

from .conftest import ORCH, AuthServer

GET_PATHS = ["/.well-known/oauth-authorization-server", "/jwks.json", "/health", "/audit/keys",
             "/client_keys.json", "/openapi.json", "/audit?jti=abcdefgh12345678"]


@pytest.mark.parametrize("path", ["/nope", "/docs", "/token/x", "/.well-known/openid-configuration"])
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_an_unknown_path_is_a_404_in_the_error_shape(server: AuthServer, path: str,
                                                     method: str) -> None:
    answer = server.http.request(method, f"{server.url}{path}")
    assert answer.status_code == 404, answer.text
    if method == "HEAD":
        assert answer.content == b""
        return
    body = answer.json()
    assert set(body) == {"error", "error_description", "reason"}
    assert (body["error"], body["reason"]) == ("not_found", "not_found")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/token", "POST"), ("PUT", "/revocations", "POST"), ("DELETE", "/introspect", "POST"),
    ("POST", "/health", "GET, HEAD"), ("PUT", "/jwks.json", "GET, HEAD"),
    ("POST", "/.well-known/oauth-authorization-server", "GET, HEAD")])
def test_an_unsupported_method_is_a_405_in_the_error_shape(server: AuthServer, method: str,
                                                           path: str, allow: str) -> None:
    answer = server.http.request(method, f"{server.url}{path}")
    assert answer.status_code == 405, answer.text
    body = answer.json()
    assert set(body) == {"error", "error_description", "reason"}
    assert (body["error"], body["reason"]) == ("method_not_allowed", "method_not_allowed")
    assert {m.strip() for m in answer.headers["allow"].split(",")} == set(allow.split(", "))


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_is_served_wherever_get_is(server: AuthServer, path: str) -> None:
    got = server.http.get(f"{server.url}{path}")
    head = server.http.head(f"{server.url}{path}")
    assert head.status_code == got.status_code != 405, (path, head.status_code, got.text)
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers.get("cache-control") == got.headers.get("cache-control")


def test_head_on_a_form_endpoint_is_a_405(server: AuthServer) -> None:
    head = server.http.head(f"{server.url}/token")
    assert head.status_code == 405 and head.headers["allow"] == "POST"


def test_the_endpoints_still_answer_get_and_post(server: AuthServer) -> None:
    assert server.http.get(f"{server.url}/health").json() == {"status": "ok"}
    token = server.root()["access_token"]
    assert server.introspect(token, ORCH).json()["active"] is True
