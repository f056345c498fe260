"""DPoP (RFC 9449) against libraries we did not write, on a running embedded system (binding
on, the default): ``openid-client`` 6 on Node 20 (its DPoP handle, nonce retry and
``fetchProtectedResource``) and joserfc (Python), whose proofs our server and services must take
and whose verifier must take ours.

InfraBot's client key is RS256 here (WebCrypto's ES256 signatures are high-S half the time, which
client assertions refuse: docs/identity.md); its DPoP key is the ES256 key in its state
directory, registered by the embedded stack. ES256 DPoP proofs are taken in either S form.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from infrabot.stack import client_keys_dir
from infrabot.testing._system import EmbeddedSystem, embedded_system
from mock_services import build_request
from orchestrator._dpop_signer import DPoPSigner, dpop_key
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.identity import (
    Context,
    ProofCheck,
    ProofPolicy,
    ath_of,
    jkt_of,
    make_proof,
    new_jti,
    verify_proof,
)
from orchestrator.keystore import client_key
from tests.authserver.conftest import INFRABOT, unverified_claims

from .conftest import NODE_DIR, private_key_pem

PULL = ("github.pull.read", {"owner": "acme", "repo": "service-x", "pull_number": 124})
REPO_READ = "urn:infra:repo:read"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSystem]:
    state = tmp_path_factory.mktemp("dpop-interop") / "state"
    client_key(client_keys_dir(Settings(state_dir=state)), INFRABOT, "RS256")
    with embedded_system(state) as running:
        yield running


def root_for_infrabot(system: EmbeddedSystem) -> str:
    ctx = Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                  commit="9f2c1e7", run_id=f"run-{uuid.uuid4().hex[:12]}")
    answer = system.system.orchestrator.auth.root_token("user:sam", [REPO_READ], ctx, INFRABOT)
    return str(answer["access_token"])


def pull_request(system: EmbeddedSystem) -> tuple[str, str]:
    """The method and URL of reading PR #124 at GitHub."""
    method, path, _, _ = build_request(*PULL)
    return method, system.endpoints["github"] + path


def infrabot_dpop_key_pem(system: EmbeddedSystem) -> str:
    return private_key_pem(dpop_key(system.settings.keys_dir, INFRABOT)).decode()


def openid_client(node: str, system: EmbeddedSystem, **request: Any) -> dict[str, Any]:
    key = system.system.stack.clients[INFRABOT]
    payload = {"issuer": system.settings.issuer_url, "clientId": INFRABOT, "alg": key.alg,
               "privateKeyPem": private_key_pem(key).decode(),
               "dpopKeyPem": infrabot_dpop_key_pem(system), **request}
    done = subprocess.run([node, str(NODE_DIR / "dpop.mjs")], input=json.dumps(payload), check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_openid_client_exchanges_with_dpop_and_calls_a_service(node: str,
                                                              system: EmbeddedSystem) -> None:
    method, url = pull_request(system)
    answer = openid_client(node, system, subjectToken=root_for_infrabot(system),
                           resource=system.endpoints["github"], scope=REPO_READ,
                           call={"url": url, "method": method})
    assert answer["ok"], answer
    response = answer["response"]
    assert response["token_type"].lower() == "dpop"
    expected = jkt_of(dpop_key(system.settings.keys_dir, INFRABOT).public)
    assert unverified_claims(response["access_token"])["cnf"] == {"jkt": expected}
    assert answer["call"]["status"] == 200, answer["call"]
    assert answer["call"]["body"]["number"] == 124


def test_openid_clients_bound_token_is_refused_as_a_bearer_token(node: str,
                                                                system: EmbeddedSystem) -> None:
    answer = openid_client(node, system, subjectToken=root_for_infrabot(system),
                           resource=system.endpoints["github"], scope=REPO_READ)
    assert answer["ok"], answer
    method, url = pull_request(system)
    stolen = httpx.request(method, url, headers={
        "Authorization": f"Bearer {answer['response']['access_token']}"})
    assert stolen.status_code == 401
    assert stolen.json()["reason"] == "dpop_bound_token_as_bearer"
    assert stolen.headers["www-authenticate"].startswith('DPoP realm="github", '
                                                         'error="invalid_token"')


def test_openid_client_without_the_registered_dpop_key_is_refused(
        node: str, system: EmbeddedSystem, tmp_path: Path) -> None:
    """The right agent (its client key) but a DPoP key of its own making."""
    other = client_key(tmp_path, INFRABOT, "ES256")
    key = system.system.stack.clients[INFRABOT]
    payload = {"issuer": system.settings.issuer_url, "clientId": INFRABOT, "alg": key.alg,
               "privateKeyPem": private_key_pem(key).decode(),
               "dpopKeyPem": private_key_pem(other).decode(),
               "subjectToken": root_for_infrabot(system),
               "resource": system.endpoints["github"], "scope": REPO_READ}
    done = subprocess.run([node, str(NODE_DIR / "dpop.mjs")], input=json.dumps(payload), check=False,
                          capture_output=True, text=True, timeout=60)
    answer = json.loads(done.stdout)
    assert (answer["ok"], answer["error"], answer["status"]) == \
        (False, "invalid_dpop_proof", 400), answer


def joserfc_proof(key: ECKey | RSAKey, alg: str, method: str, url: str, *,
                  token: str | None = None) -> str:
    claims: dict[str, Any] = {"jti": new_jti(), "htm": method, "htu": url,
                              "iat": int(time.time())}
    if token is not None:
        claims["ath"] = ath_of(token)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=[alg])


def test_a_service_takes_a_proof_made_by_joserfc(system: EmbeddedSystem) -> None:
    """A token bound to a key, and the service call's proof signed by joserfc with that key."""
    pem = infrabot_dpop_key_pem(system)
    with AuthClient(system.endpoints["auth"], INFRABOT, system.system.stack.clients[INFRABOT],
                    dpop=DPoPSigner(dpop_key(system.settings.keys_dir, INFRABOT))) as infrabot:
        token = infrabot.exchange(root_for_infrabot(system), resource=system.endpoints["github"],
                                  scope=REPO_READ)["access_token"]
    method, url = pull_request(system)
    key = ECKey.import_key(pem)
    assert key.thumbprint() == unverified_claims(token)["cnf"]["jkt"]
    response = httpx.request(method, url, headers={
        "Authorization": f"DPoP {token}", "DPoP": joserfc_proof(key, "ES256", method, url,
                                                                token=token)})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("alg", "make"), [("ES256", lambda: ECKey.generate_key("P-256")),
                                           ("RS256", lambda: RSAKey.generate_key(2048))])
def test_our_verifier_takes_joserfc_proofs_and_their_thumbprint(alg: str, make: Any) -> None:
    key = make()
    url = "https://aws.example/ec2/CreateTags"
    proof = verify_proof(joserfc_proof(key, alg, "POST", url, token="a.b.c"),
                         ProofCheck("POST", url, access_token="a.b.c"), ProofPolicy(),
                         now=int(time.time()))
    assert proof.jkt == key.thumbprint()


def test_joserfc_verifies_our_proofs(system: EmbeddedSystem) -> None:
    ours = dpop_key(system.settings.keys_dir, INFRABOT)
    proof = make_proof(ours, method="GET", url="https://github.example/x?y=1", now=100,
                       access_token="a.b.c", nonce="n-1")
    token = jwt.decode(proof, ECKey.import_key(ours.public.jwk), algorithms=["ES256"])
    assert token.header["typ"] == "dpop+jwt"
    assert ECKey.import_key(token.header["jwk"]).thumbprint() == jkt_of(ours.public)
    assert token.claims == {"jti": token.claims["jti"], "htm": "GET",
                            "htu": "https://github.example/x", "iat": 100,
                            "ath": ath_of("a.b.c"), "nonce": "n-1"}
