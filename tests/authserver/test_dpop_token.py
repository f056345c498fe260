"""DPoP (RFC 9449) at the authorization server over real HTTP, binding on: the metadata, the
nonce, every token of a three-hop chain bound to the right agent's key, the proof checks at the
token endpoint each with its exact error, replay on both registries, and key registration."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authserver.conftest import (
    ARGOCD,
    CLEANUP,
    INFRABOT,
    ORCH,
    AuthServer,
    refusal,
    serve,
    unverified_claims,
)
from orchestrator._dpop_signer import DPoPSigner, dpop_key
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import InvalidDPoPProof
from orchestrator.identity import (
    SigningKey,
    generate_private_key,
    jkt_of,
    make_proof,
    signing_key_of,
)

AGENTS = (INFRABOT, ARGOCD, CLEANUP)


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server with DPoP binding on (the default) and each agent's client signing proofs."""
    with serve(tmp_path_factory.mktemp("dpop"), dpop_binding=True) as srv:
        for agent in AGENTS:
            srv.clients[agent] = dpop_client(srv, agent)
        yield srv


def dpop_client(srv: AuthServer, agent: str, key: SigningKey | None = None) -> AuthClient:
    signer = DPoPSigner(key or dpop_key(srv.settings.keys_dir, agent))
    return AuthClient(srv.url, agent, srv.stack.clients[agent], dpop=signer, http=srv.http)


def jkt(srv: AuthServer, agent: str) -> str:
    return jkt_of(dpop_key(srv.settings.keys_dir, agent).public)


def other_key() -> SigningKey:
    return signing_key_of(generate_private_key("ES256"), "ES256")


def nonce(srv: AuthServer) -> str:
    """The server's current nonce, as any token-endpoint answer carries it."""
    value: str = srv.post("/token", {}).headers["dpop-nonce"]
    return value


def proof(srv: AuthServer, agent: str, *, url: str | None = None, method: str = "POST",
          now: int | None = None, key: SigningKey | None = None, with_nonce: bool = True) -> str:
    return make_proof(key or dpop_key(srv.settings.keys_dir, agent), method=method,
                      url=url or f"{srv.url}/token", now=int(time.time()) if now is None else now,
                      nonce=nonce(srv) if with_nonce else None)


def exchange(srv: AuthServer, agent: str, subject: str, dpop: str | None,
             **fields: str) -> httpx.Response:
    headers = {"DPoP": dpop} if dpop is not None else {}
    return srv.post("/token", {**srv.auth(agent), **srv.exchange_form(subject, **fields)},
                    headers=headers)


def test_metadata_names_the_dpop_algorithms(bound: AuthServer) -> None:
    metadata = bound.http.get(f"{bound.url}/.well-known/oauth-authorization-server").json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "RS256", "EdDSA"]


def test_every_token_of_the_chain_is_bound_to_the_agent_that_uses_it(bound: AuthServer) -> None:
    root, h1, h2, aws = bound.chain()
    assert unverified_claims(root)["cnf"] == {"jkt": jkt(bound, INFRABOT)}
    assert unverified_claims(h1)["cnf"] == {"jkt": jkt(bound, ARGOCD)}
    assert unverified_claims(h2)["cnf"] == {"jkt": jkt(bound, CLEANUP)}
    assert unverified_claims(aws)["cnf"] == {"jkt": jkt(bound, CLEANUP)}
    answer = bound.clients[CLEANUP].exchange(h2, resource=bound.aws)
    assert answer["token_type"] == "DPoP"


def test_a_proof_without_the_servers_nonce_gets_use_dpop_nonce_and_the_nonce(
        bound: AuthServer) -> None:
    root = bound.root()["access_token"]
    response = exchange(bound, INFRABOT, root, proof(bound, INFRABOT, with_nonce=False),
                        audience=ARGOCD)
    refusal(response, 400, "use_dpop_nonce", "dpop_nonce_missing")
    given = response.headers["dpop-nonce"]
    with_nonce = make_proof(dpop_key(bound.settings.keys_dir, INFRABOT), method="POST",
                            url=f"{bound.url}/token", now=int(time.time()), nonce=given)
    assert exchange(bound, INFRABOT, root, with_nonce, audience=ARGOCD).status_code == 200


def test_the_nonce_handed_out_is_the_current_steps_computed_once_per_step(
        bound: AuthServer) -> None:
    gate = bound.stack.auth.dpop
    step = gate.nonces.step
    start = (int(time.time()) // step + 10) * step  # a step of its own, later than any used
    first = gate.nonce(now=start)
    assert first == gate.nonces.current(now=start)
    assert gate.nonce(now=start + step - 1) is first  # the same step: the one computed
    later = gate.nonce(now=start + step)
    assert later == gate.nonces.current(now=start + step) and later != first
    assert gate.nonces.accepts(first, now=start + step)
    now = int(time.time())
    assert gate.nonce(now=now) == gate.nonces.current(now=now)  # and back: not a step cache


def test_a_bound_subject_token_without_a_proof_is_refused_and_audited(bound: AuthServer) -> None:
    root = bound.root()["access_token"]
    mark = bound.audit_mark()
    refusal(exchange(bound, INFRABOT, root, None, audience=ARGOCD), 400, "invalid_dpop_proof",
            "dpop_proof_missing")
    bound.assert_denied(mark, "dpop_proof_missing", root)


def test_the_right_agent_with_another_dpop_key_is_refused(bound: AuthServer) -> None:
    """A hand-off token presented by the agent it names, authenticated with its client key,
    but proving a key other than its DPoP key."""
    root = bound.root()["access_token"]
    refusal(exchange(bound, INFRABOT, root, proof(bound, INFRABOT, key=other_key()),
                     audience=ARGOCD), 400, "invalid_dpop_proof", "dpop_key_mismatch")
    with pytest.raises(InvalidDPoPProof) as raised:
        dpop_client(bound, INFRABOT, other_key()).exchange(root, audience=ARGOCD)
    assert raised.value.reason == "dpop_key_mismatch"


def test_another_agent_with_its_own_key_is_refused_as_not_named(bound: AuthServer) -> None:
    root = bound.root()["access_token"]
    refusal(exchange(bound, CLEANUP, root, proof(bound, CLEANUP), resource=bound.aws), 400,
            "invalid_request", "may_act_mismatch")


@pytest.mark.parametrize(("change", "reason"), [
    ({"url": "/introspect"}, "dpop_htu_mismatch"),
    ({"method": "GET"}, "dpop_htm_mismatch"),
    ({"now": -120}, "dpop_proof_too_old"),
    ({"now": 120}, "dpop_iat_in_future")])
def test_a_proof_for_another_request_or_time_is_refused(bound: AuthServer, change: dict[str, Any],
                                                        reason: str) -> None:
    kwargs: dict[str, Any] = {}
    if "url" in change:
        kwargs["url"] = bound.url + change["url"]
    if "method" in change:
        kwargs["method"] = change["method"]
    if "now" in change:
        kwargs["now"] = int(time.time()) + change["now"]
    root = bound.root()["access_token"]
    refusal(exchange(bound, INFRABOT, root, proof(bound, INFRABOT, **kwargs), audience=ARGOCD),
            400, "invalid_dpop_proof", reason)


def test_two_dpop_headers_are_refused(bound: AuthServer) -> None:
    root = bound.root()["access_token"]
    response = bound.http.post(
        f"{bound.url}/token", data={**bound.auth(INFRABOT),
                                    **bound.exchange_form(root, audience=ARGOCD)},
        headers=[("DPoP", proof(bound, INFRABOT)), ("DPoP", proof(bound, INFRABOT))])
    refusal(response, 400, "invalid_dpop_proof", "dpop_proof_repeated")


def test_a_replayed_proof_is_refused_on_either_registry(store_server: AuthServer) -> None:
    """The proof's jti is claimed once in the shared registry (in process, then Redis)."""
    srv = store_server
    root = srv.root()["access_token"]
    used = proof(srv, INFRABOT)
    assert exchange(srv, INFRABOT, root, used, audience=ARGOCD).status_code == 200
    refusal(exchange(srv, INFRABOT, root, used, audience=ARGOCD), 400, "invalid_dpop_proof",
            "dpop_proof_replayed")


def test_registering_a_dpop_key_needs_client_auth_and_a_proof(bound: AuthServer) -> None:
    url = f"{bound.url}/dpop_keys"
    refusal(bound.post("/dpop_keys", bound.auth(INFRABOT)), 400, "invalid_dpop_proof",
            "dpop_proof_missing")
    refusal(bound.post("/dpop_keys", {"client_id": INFRABOT},
                       headers={"DPoP": proof(bound, INFRABOT, url=url)}),
            401, "invalid_client", "client_authentication_missing")
    refusal(bound.post("/dpop_keys", bound.auth(INFRABOT),
                       headers={"DPoP": proof(bound, INFRABOT)}),  # a proof for /token
            400, "invalid_dpop_proof", "dpop_htu_mismatch")
    answer = bound.post("/dpop_keys", bound.auth(INFRABOT),
                        headers={"DPoP": proof(bound, INFRABOT, url=url)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["jkt"] == jkt(bound, INFRABOT)


def test_an_agent_on_two_hosts_has_two_keys_and_either_proves_its_hand_off(
        tmp_path: Path) -> None:
    """A second host registers ArgoCD's second key: a hand-off to ArgoCD can no longer be bound
    to one key (either host may take the hop), so it goes without cnf and either registered key
    proves it; any other key does not. Revoking one (`infrabot keys revoke dpop:agent:argocd
    KID`) binds hand-offs to the other again."""
    with serve(tmp_path, dpop_binding=True) as srv:
        second = other_key()
        assert dpop_client(srv, ARGOCD, second).register_dpop_key()["jkt"] == \
            jkt_of(second.public)
        h1 = dpop_client(srv, INFRABOT).exchange(srv.root()["access_token"], audience=ARGOCD)
        assert "cnf" not in unverified_claims(h1["access_token"])
        with pytest.raises(InvalidDPoPProof) as raised:
            dpop_client(srv, ARGOCD, other_key()).exchange(h1["access_token"], audience=CLEANUP)
        assert raised.value.reason == "dpop_key_mismatch"
        for key in (second, dpop_key(srv.settings.keys_dir, ARGOCD)):
            assert dpop_client(srv, ARGOCD, key).exchange(h1["access_token"], audience=CLEANUP)
        registry = srv.stack.registry
        assert registry is not None
        assert registry.remove(f"dpop:{ARGOCD}", jkt(srv, ARGOCD))
        h1 = dpop_client(srv, INFRABOT).exchange(srv.root()["access_token"], audience=ARGOCD)
        assert unverified_claims(h1["access_token"])["cnf"] == {"jkt": jkt_of(second.public)}


def test_a_hand_off_to_an_agent_without_a_key_waits_for_the_key_it_registers(
        tmp_path: Path) -> None:
    """ArgoCD has registered no DPoP key yet (its workers are not up): InfraBot's hand-off is
    issued without cnf, and ArgoCD exchanges it only with a proof by the key it registers."""
    with serve(tmp_path, dpop_binding=True) as srv:
        registry = srv.stack.registry
        assert registry is not None
        for kid in list(registry.keys_of(f"dpop:{ARGOCD}")):
            registry.remove(f"dpop:{ARGOCD}", kid)
        root = srv.root()["access_token"]
        h1 = dpop_client(srv, INFRABOT).exchange(root, audience=ARGOCD)["access_token"]
        assert "cnf" not in unverified_claims(h1)
        argocd = dpop_client(srv, ARGOCD)
        with pytest.raises(InvalidDPoPProof) as raised:
            argocd.exchange(h1, audience=CLEANUP)
        assert raised.value.reason == "dpop_key_not_registered"
        argocd.register_dpop_key()
        with pytest.raises(InvalidDPoPProof) as raised:
            dpop_client(srv, ARGOCD, other_key()).exchange(h1, audience=CLEANUP)
        assert raised.value.reason == "dpop_key_mismatch"
        h2 = argocd.exchange(h1, audience=CLEANUP)["access_token"]
        assert unverified_claims(h2)["cnf"] == {"jkt": jkt(srv, CLEANUP)}


def test_binding_off_and_a_service_that_requires_it(tmp_path: Path) -> None:
    """With binding off, tokens are unbound unless a proof comes with the request; a service
    the directory marks ``dpop: required`` still gets only bound tokens."""
    workflows = tmp_path / "workflows"
    shutil.copytree(Settings().workflows_dir, workflows)
    directory = workflows / "directory.yaml"
    directory.write_text(directory.read_text().replace(
        "  aws:\n    scopes:", "  aws:\n    dpop: required\n    scopes:"))
    with serve(tmp_path / "state", dpop_binding=False, workflows_dir=workflows) as srv:
        root = srv.root()["access_token"]
        h1 = srv.clients[INFRABOT].exchange(root, audience=ARGOCD)["access_token"]
        h2 = srv.clients[ARGOCD].exchange(h1, audience=CLEANUP)["access_token"]
        assert "cnf" not in unverified_claims(h2)
        plain = srv.clients[CLEANUP]
        with pytest.raises(InvalidDPoPProof) as raised:
            plain.exchange(h2, resource=srv.aws)
        assert raised.value.reason == "dpop_proof_required"
        pagerduty = plain.exchange(h2, resource=srv.service("pagerduty"))
        assert pagerduty["token_type"] == "Bearer"
        aws = dpop_client(srv, CLEANUP).exchange(h2, resource=srv.aws)
        assert unverified_claims(aws["access_token"])["cnf"] == {"jkt": jkt(srv, CLEANUP)}


def test_the_log_url_takes_a_bound_token_only_with_a_proof_by_its_key(bound: AuthServer) -> None:
    root, h1, _, _ = bound.chain()
    jti = unverified_claims(h1)["jti"]
    url = f"{bound.url}/audit"

    def get(headers: dict[str, str]) -> httpx.Response:
        return bound.http.get(url, params={"jti": jti}, headers=headers)

    as_bearer = get({"Authorization": f"Bearer {h1}"})
    refusal(as_bearer, 401, "invalid_token", "dpop_bound_token_as_bearer")
    assert as_bearer.headers["www-authenticate"].startswith('DPoP realm="authserver"')
    # RFC 9449 7.1: the token as presented is invalid_token, its proof invalid_dpop_proof
    refusal(get({"Authorization": f"DPoP {h1}"}), 401, "invalid_dpop_proof", "dpop_proof_missing")
    argocd_key = dpop_key(bound.settings.keys_dir, ARGOCD)

    def proof_for(token: str, key: SigningKey = argocd_key) -> str:
        return make_proof(key, method="GET", url=url, now=int(time.time()),
                          access_token=token, nonce=nonce(bound))

    refusal(get({"Authorization": f"DPoP {h1}", "DPoP": proof_for(h1, other_key())}), 401,
            "invalid_dpop_proof", "dpop_key_mismatch")
    refusal(get({"Authorization": f"DPoP {h1}", "DPoP": proof_for(root)}), 401,
            "invalid_dpop_proof", "dpop_ath_mismatch")
    used = proof_for(h1)
    answer = get({"Authorization": f"DPoP {h1}", "DPoP": used})
    assert answer.status_code == 200, answer.text
    assert answer.json()["jti"] == jti
    refusal(get({"Authorization": f"DPoP {h1}", "DPoP": used}), 401, "invalid_dpop_proof",
            "dpop_proof_replayed")


def test_the_log_url_asks_for_its_nonce_as_a_resource_does(bound: AuthServer) -> None:
    """RFC 9449 9: 401 use_dpop_nonce with the nonce in DPoP-Nonce, so a client holding only the
    token learns it here; a challenge naming the error."""
    _, h1, _, _ = bound.chain()
    url = f"{bound.url}/audit"
    proof = make_proof(dpop_key(bound.settings.keys_dir, ARGOCD), method="GET", url=url,
                       now=int(time.time()), access_token=h1)
    before = bound.stack.auth.now()
    answer = bound.http.get(url, params={"jti": unverified_claims(h1)["jti"]},
                            headers={"Authorization": f"DPoP {h1}", "DPoP": proof})
    after = bound.stack.auth.now()
    refusal(answer, 401, "use_dpop_nonce", "dpop_nonce_missing")
    # the server's current nonce as it answered: that of the step it answered in (nonces
    # change every step, so the request may have straddled two)
    nonces = bound.stack.auth.dpop.nonces
    assert answer.headers["dpop-nonce"] in {nonces.current(now=before),
                                            nonces.current(now=after)}
    assert answer.headers["www-authenticate"] == 'DPoP realm="authserver", error="use_dpop_nonce"'


def test_the_log_url_takes_an_unbound_token_only_as_bearer(tmp_path: Path) -> None:
    with serve(tmp_path / "state", dpop_binding=False) as srv:
        root = srv.root()["access_token"]
        h1 = srv.clients[INFRABOT].exchange(root, audience=ARGOCD)["access_token"]
        answer = srv.http.get(f"{srv.url}/audit", params={"jti": unverified_claims(h1)["jti"]},
                              headers={"Authorization": f"DPoP {h1}", "DPoP": "not-a-proof"})
        refusal(answer, 401, "invalid_token", "dpop_token_not_bound")


def test_introspection_says_a_bound_token_is_dpop(bound: AuthServer) -> None:
    aws = bound.chain()[3]
    answer = bound.introspect(aws, ORCH)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["active"], body["token_type"], body["cnf"]) == \
        (True, "DPoP", {"jkt": jkt(bound, CLEANUP)})
