"""Authlib's ``OAuth2Client`` (httpx) with ``PrivateKeyJWT`` client authentication, as its
documentation sets it up, against the running authorization server: the RFC 8693 token
exchange and RFC 7662 introspection, with Authlib's own default assertion (RS256, one hour)."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator

import pytest
from authlib.integrations.base_client import OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey

from orchestrator.authserver import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS
from orchestrator.identity._jws import P256_ORDER
from tests.authserver.conftest import ARGOCD, CLEANUP, INFRABOT, AuthServer, unverified_claims

from .conftest import private_key_pem

with warnings.catch_warnings():  # Authlib 1.9 prefers the httpx2 fork; httpx is what we use
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client


def authlib_client(server: AuthServer, client_id: str, auth: PrivateKeyJWT | None = None,
                   key: object = None) -> OAuth2Client:
    token_endpoint = f"{server.url}/token"
    client = OAuth2Client(client_id, key or private_key_pem(server.stack.clients[client_id]),
                          token_endpoint_auth_method="private_key_jwt")
    client.register_client_auth_method(auth or PrivateKeyJWT(token_endpoint))
    return client


@pytest.fixture
def infrabot(running: AuthServer) -> Iterator[OAuth2Client]:
    with authlib_client(running, INFRABOT) as client:
        yield client


def exchange(client: OAuth2Client, server: AuthServer, subject: str, **target: str) -> dict:
    token = client.fetch_token(f"{server.url}/token", grant_type=GRANT_TOKEN_EXCHANGE,
                               subject_token=subject, subject_token_type=TOKEN_TYPE_ACCESS,
                               **target)
    return dict(token)


def test_authlibs_default_assertion_lives_one_hour_and_is_accepted(
        running: AuthServer, infrabot: OAuth2Client) -> None:
    """What Authlib sends by default (RS256, exp = iat + 3600, a jti) authenticates."""
    sent: list[str] = []
    infrabot.event_hooks["request"].append(
        lambda request: sent.append(request.content.decode()))
    token = exchange(infrabot, running, running.root()["access_token"], audience=ARGOCD)
    assert token["token_type"] == "Bearer"
    assertion = next(part.split("=", 1)[1] for part in sent[0].split("&")
                     if part.startswith("client_assertion="))
    claims = unverified_claims(assertion)
    assert claims["exp"] - claims["iat"] == 3600 and claims["iss"] == INFRABOT


def test_token_exchange_for_the_next_agent_and_for_a_service(
        running: AuthServer, infrabot: OAuth2Client) -> None:
    root = running.root()["access_token"]
    handed = exchange(infrabot, running, root, audience=ARGOCD)
    assert handed["issued_token_type"] == TOKEN_TYPE_ACCESS
    claims = unverified_claims(handed["access_token"])
    assert claims["act"] == {"sub": INFRABOT} and claims["may_act"] == {"sub": ARGOCD}
    for_datadog = exchange(infrabot, running, root, resource=running.service("datadog"))
    assert unverified_claims(for_datadog["access_token"])["aud"] == running.service("datadog")
    assert set(for_datadog["scope"].split()) <= set(unverified_claims(root)["scope"].split())


def test_a_refused_exchange_reaches_authlib_as_the_rfc_error(
        running: AuthServer, infrabot: OAuth2Client) -> None:
    root = running.root()["access_token"]
    with pytest.raises(OAuthError) as caught:
        exchange(infrabot, running, root, audience=CLEANUP)
    assert caught.value.error == "invalid_target"


def test_introspection_of_the_chain_by_its_members(running: AuthServer,
                                                  infrabot: OAuth2Client) -> None:
    root = running.root()["access_token"]
    handed = exchange(infrabot, running, root, audience=ARGOCD)["access_token"]
    answer = infrabot.introspect_token(f"{running.url}/introspect", token=handed)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["active"] is True and body["chain"] == [INFRABOT, "user:sam"]
    with authlib_client(running, ARGOCD) as argocd:  # the audience of the hand-off
        assert argocd.introspect_token(f"{running.url}/introspect",
                                       token=handed).json()["active"] is True
        # ArgoCD is neither in the root token's chain nor its audience
        assert argocd.introspect_token(f"{running.url}/introspect",
                                       token=root).json() == {"active": False}


def test_introspection_with_authlibs_audience_left_to_the_endpoint_url(
        running: AuthServer) -> None:
    """``PrivateKeyJWT()`` without a token endpoint addresses each assertion to the URL it is
    sent to (here the introspection endpoint)."""
    root = running.root()["access_token"]
    with authlib_client(running, INFRABOT, PrivateKeyJWT()) as client:
        answer = client.introspect_token(f"{running.url}/introspect", token=root)
    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] is True


def test_authlib_es256_assertions_are_accepted_only_in_their_low_s_form(
        running: AuthServer) -> None:
    """Known deviation, documented in docs/identity.md: Authlib (joserfc over pyca/cryptography)
    does not normalise ECDSA's S, so about half of its ES256 assertions are high-S, which this
    server refuses (``assertion_malleable_signature``) to keep one encoding per JWT. RS256 (its
    default) and EdDSA are unaffected; an ES256 client must send low-S signatures."""
    key = ECKey.import_key(private_key_pem(running.stack.clients[CLEANUP]))
    sent: list[str] = []
    outcomes: list[tuple[bool, int]] = []
    auth = PrivateKeyJWT(f"{running.url}/token", alg="ES256")
    with authlib_client(running, CLEANUP, auth, key) as client:
        client.event_hooks["request"].append(
            lambda request: sent.append(request.content.decode()))
        for _ in range(64):
            answer = client.introspect_token(f"{running.url}/introspect", token="x")
            assertion = next(p.split("=", 1)[1] for p in sent[-1].split("&")
                             if p.startswith("client_assertion="))
            high = _s(assertion) > P256_ORDER // 2
            outcomes.append((high, answer.status_code))
            if high:
                assert answer.json()["reason"] == "assertion_malleable_signature"
            if {h for h, _ in outcomes} == {True, False}:
                break
    assert {(True, 401), (False, 200)} == set(outcomes), outcomes


def _s(jwt: str) -> int:
    signature = jwt.rsplit(".", 1)[1]
    return int.from_bytes(base64.urlsafe_b64decode(signature + "==")[32:], "big")
