"""The npm package ``openid-client`` (Node 20) against the running authorization server:
RFC 8414 discovery, ``private_key_jwt`` client authentication and an RFC 8693 token exchange.

The client lives in ``tests/interop/node`` (``package.json`` + ``package-lock.json``); this test
runs ``npm ci`` there when ``node_modules`` is missing. Skipped with the reason when Node or npm
is absent, except on CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.authserver.conftest import ARGOCD, CLEANUP, INFRABOT, AuthServer, unverified_claims

from .conftest import NODE_DIR, private_key_pem


def openid_client_exchange(node: str, server: AuthServer, client_id: str, subject: str,
                           **target: str) -> dict[str, Any]:
    key = server.stack.clients[client_id]
    request = {"issuer": server.issuer, "clientId": client_id, "alg": key.alg,
               "privateKeyPem": private_key_pem(key).decode(), "subjectToken": subject,
               **target}
    done = subprocess.run([node, str(NODE_DIR / "exchange.mjs")], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_openid_client_exchanges_a_token_for_the_next_agent(node: str,
                                                           running: AuthServer) -> None:
    root = running.root()["access_token"]
    answer = openid_client_exchange(node, running, INFRABOT, root, audience=ARGOCD)
    assert answer["ok"], answer
    response = answer["response"]
    assert response["token_type"].lower() == "bearer"
    assert response["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = unverified_claims(response["access_token"])
    assert claims["act"] == {"sub": INFRABOT} and claims["may_act"] == {"sub": ARGOCD}
    assertion = answer["assertion"]  # what openid-client signed: addressed to our issuer
    assert assertion["iss"] == assertion["sub"] == INFRABOT
    assert assertion["aud"] == running.issuer


def test_openid_client_exchanges_for_a_service_with_a_narrower_scope(
        node: str, running: AuthServer) -> None:
    root = running.root()["access_token"]
    answer = openid_client_exchange(node, running, INFRABOT, root,
                                    resource=running.service("datadog"),
                                    scope="urn:infra:monitoring:read")
    assert answer["ok"], answer
    claims = unverified_claims(answer["response"]["access_token"])
    assert claims["aud"] == running.service("datadog")
    assert claims["scope"] == "urn:infra:monitoring:read"


def test_a_refused_exchange_reaches_openid_client_as_the_rfc_error(
        node: str, running: AuthServer) -> None:
    root = running.root()["access_token"]
    answer = openid_client_exchange(node, running, INFRABOT, root, audience=CLEANUP)
    assert answer == {"ok": False, "error": "invalid_target", "status": 400,
                      "error_description": answer["error_description"],
                      "reason": "handoff_not_allowed"}
    assert "may not hand off" in answer["error_description"]
