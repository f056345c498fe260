"""RFC 6749 section 2.3: a client MUST NOT use more than one authentication method in a request.
A ``private_key_jwt`` assertion beside an ``Authorization`` header (``Basic``: client_secret_basic,
or any other credential) or a ``client_secret`` (client_secret_post) is refused 400
``invalid_request`` / ``multiple_client_auth`` before any assertion is checked, audited as the
endpoint's refusal by no one, the credentials never stored."""

from __future__ import annotations

import base64

import pytest

from .conftest import INFRABOT, ORCH, AuthServer, refusal

ACTIONS = {"/token": "token", "/introspect": "introspect", "/revoke": "revoke",
           "/revocations": "revoke", "/dpop_keys": "dpop_key"}
BASIC = "Basic " + base64.b64encode(b"client:orchestrator:s3cr3t-basic-password").decode()


def _form(server: AuthServer, path: str, client: str) -> dict[str, str]:
    token = server.root()["access_token"]
    extra = {"/token": server.exchange_form(token, audience="agent:argocd"),
             "/introspect": {"token": token}, "/revoke": {"token": token},
             "/revocations": {"user": "user:sam"}, "/dpop_keys": {}}[path]
    return {**server.auth(client), **extra}


@pytest.mark.parametrize("path", list(ACTIONS))
@pytest.mark.parametrize("second", ["basic", "bearer", "client_secret"])
def test_two_client_authentication_methods_are_refused(server: AuthServer, path: str,
                                                       second: str) -> None:
    client = INFRABOT if path in ("/token", "/dpop_keys") else ORCH
    form = _form(server, path, client)
    headers = {}
    if second == "basic":
        headers["Authorization"] = BASIC
    elif second == "bearer":
        headers["Authorization"] = "Bearer " + form["client_assertion"]
    else:
        form["client_secret"] = "s3cr3t-post-password"
    mark = server.audit_mark()
    refusal(server.post(path, form, headers=headers), 400, "invalid_request",
            "multiple_client_auth")
    record = server.assert_denied(mark, "multiple_client_auth", form["client_assertion"],
                                  "s3cr3t-basic-password", BASIC.split()[1],
                                  "s3cr3t-post-password")
    assert (record.action, record.performed_by, record.status, record.resource) == (
        ACTIONS[path], None, 400, "")


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_basic_alone_is_still_no_client_authentication(server: AuthServer, path: str) -> None:
    refusal(server.post(path, {"token": "x"}, headers={"Authorization": BASIC}), 401,
            "invalid_client", "client_authentication_missing")


def test_one_method_is_still_served(server: AuthServer) -> None:
    token = server.root()["access_token"]
    assert server.introspect(token).json()["active"] is True
