"""DPoP-bound tokens at the services (RFC 9449 section 7), over real HTTP with binding on: a
bound token is taken only with the DPoP scheme and a valid, first-used proof by its key; every
refusal is a 401 with a ``WWW-Authenticate: DPoP`` challenge, its specific reason, and its deny
record in the audit trail. Unbound tokens, the per-service migration setting and the static
baseline are checked beside it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mock_services import build_request
from orchestrator.config import Settings
from orchestrator.identity import (
    SigningKey,
    generate_private_key,
    jkt_of,
    make_proof,
    signing_key_of,
)
from orchestrator.registry import RedisRevocationStore

Stack = Any  # conftest.Stack: not importable by name when several conftests are collected
ACTION = "aws.ec2.describe_instances"
PARAMS = {"InstanceIds": ["i-0a1b2c3d4e5f60001"]}
STATIC = "static-baseline-token-0123456789"


def new_key() -> SigningKey:
    return signing_key_of(generate_private_key("ES256"), "ES256")


KEY = new_key()


@pytest.fixture
def bound_stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory(dpop_binding=True, static_token=STATIC)


def send(stack: Stack, client: httpx.Client, token: str, *, scheme: str = "DPoP",
         proof: str | None = None, action: str = ACTION,
         params: dict[str, Any] | None = None) -> httpx.Response:
    method, path, query, body = build_request(action, params or PARAMS)
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return client.request(method, stack.urls["aws"] + path, params=query, json=body,
                          headers=headers)


ACTION_METHOD, ACTION_PATH, _, _ = build_request(ACTION, PARAMS)


def proof_for(stack: Stack, token: str, *, key: SigningKey = KEY, method: str = ACTION_METHOD,
              path: str = ACTION_PATH, now: int | None = None) -> str:
    """A proof for ``method`` at AWS's ``path`` (by default the request :func:`send` makes),
    made ``now``."""
    return make_proof(key, method=method, url=stack.settings.service_url("aws") + path,
                      now=int(time.time()) if now is None else now, access_token=token)


def dpop_refusal(stack: Stack, response: httpx.Response, error: str, reason: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert (body["error"], body["reason"]) == (error, reason), body
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'DPoP realm="aws", error="{error}", error_description="')
    assert 'algs="ES256 RS256 EdDSA"' in challenge
    [record] = stack.records(response)
    assert (record.decision, record.reason) == ("deny", reason)


def test_a_bound_token_with_a_proof_by_its_key_is_taken(bound_stack: Stack,
                                                        http: httpx.Client) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    response = send(bound_stack, http, token, proof=proof_for(bound_stack, token))
    assert response.status_code == 200, response.text
    [record] = bound_stack.records(response)
    assert (record.decision, record.reason) == ("allow", "ok")


def test_a_bound_token_sent_as_bearer_is_refused(bound_stack: Stack, http: httpx.Client) -> None:
    """A stolen service token replayed by someone without the key, as a bearer token."""
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    dpop_refusal(bound_stack, send(bound_stack, http, token, scheme="Bearer"), "invalid_token",
                 "dpop_bound_token_as_bearer")


def test_a_bound_token_without_a_proof_is_refused(bound_stack: Stack, http: httpx.Client) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    dpop_refusal(bound_stack, send(bound_stack, http, token), "invalid_dpop_proof",
                 "dpop_proof_missing")


def test_a_proof_from_another_key_is_refused(bound_stack: Stack, http: httpx.Client) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    dpop_refusal(bound_stack, send(bound_stack, http, token,
                                   proof=proof_for(bound_stack, token, key=new_key())),
                 "invalid_dpop_proof", "dpop_key_mismatch")


@pytest.mark.parametrize(("change", "reason"), [
    ({"path": "/other"}, "dpop_htu_mismatch"),
    ({"method": "GET"}, "dpop_htm_mismatch"),
    ({"now": -70}, "dpop_proof_too_old"),
    ({"now": 30}, "dpop_iat_in_future")])
def test_a_proof_for_another_url_method_or_time_is_refused(
        bound_stack: Stack, http: httpx.Client, change: dict[str, Any], reason: str) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    kwargs = {**change}
    if "now" in kwargs:
        kwargs["now"] = int(time.time()) + kwargs["now"]
    dpop_refusal(bound_stack, send(bound_stack, http, token,
                                   proof=proof_for(bound_stack, token, **kwargs)),
                 "invalid_dpop_proof", reason)


def test_a_proof_made_for_another_token_is_refused(bound_stack: Stack,
                                                   http: httpx.Client) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    other = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    dpop_refusal(bound_stack, send(bound_stack, http, token,
                                   proof=proof_for(bound_stack, other)),
                 "invalid_dpop_proof", "dpop_ath_mismatch")


@pytest.mark.parametrize("registry", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_replayed_proof_is_refused(stack_factory: Callable[..., Stack], http: httpx.Client,
                                     registry: str, request: pytest.FixtureRequest) -> None:
    """The proof's jti is claimed once in the shared registry: in process, then on Redis
    (where it goes in the round trip that checks revocation)."""
    revocation = None
    if registry == "redis":
        revocation = RedisRevocationStore.from_url(request.getfixturevalue("redis_url"))
        request.addfinalizer(revocation.close)
    stack = stack_factory(dpop_binding=True, revocation=revocation)
    token = stack.token("aws", cnf=jkt_of(KEY.public))
    used = proof_for(stack, token)
    assert send(stack, http, token, proof=used).status_code == 200
    dpop_refusal(stack, send(stack, http, token, proof=used), "invalid_dpop_proof",
                 "dpop_proof_replayed")


@pytest.mark.parametrize("registry", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_token_bound_to_a_revoked_key_is_refused_even_with_a_proof_by_it(
        stack_factory: Callable[..., Stack], http: httpx.Client, registry: str,
        request: pytest.FixtureRequest) -> None:
    """Whoever holds the key and a token bound to it (the key leaked with the token) is refused
    once the key is revoked (``infrabot keys revoke dpop:AGENT KID``), not when the token
    expires; a token bound to another key is taken as before."""
    revocation = None
    if registry == "redis":
        revocation = RedisRevocationStore.from_url(request.getfixturevalue("redis_url"))
        request.addfinalizer(revocation.close)
    stack = stack_factory(dpop_binding=True, revocation=revocation)
    other_key = new_key()
    token, other = (stack.token("aws", cnf=jkt_of(k.public)) for k in (KEY, other_key))
    assert send(stack, http, token, proof=proof_for(stack, token)).status_code == 200
    stack.revocation.revoke_key(jkt_of(KEY.public), expires_at=int(time.time()) + 900)
    response = send(stack, http, token, proof=proof_for(stack, token))
    assert response.status_code == 401, response.text
    assert (response.json()["error"], response.json()["reason"]) == (
        "invalid_token", "bound_key_revoked")
    [record] = stack.records(response)
    assert (record.decision, record.reason) == ("deny", "bound_key_revoked")
    assert send(stack, http, other,
                proof=proof_for(stack, other, key=other_key)).status_code == 200


def test_an_unbound_token_is_refused_where_binding_is_required(bound_stack: Stack,
                                                                http: httpx.Client) -> None:
    token = bound_stack.token("aws")
    dpop_refusal(bound_stack, send(bound_stack, http, token, scheme="Bearer"), "invalid_token",
                 "dpop_binding_required")
    dpop_refusal(bound_stack, send(bound_stack, http, token, proof=proof_for(bound_stack, token)),
                 "invalid_token", "dpop_token_not_bound")


def test_a_proof_with_the_bearer_scheme_is_refused(bound_stack: Stack,
                                                   http: httpx.Client) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public))
    dpop_refusal(bound_stack, send(bound_stack, http, token, scheme="Bearer",
                                   proof=proof_for(bound_stack, token)),
                 "invalid_dpop_proof", "dpop_scheme_required")


def test_a_bad_token_is_refused_as_that_before_its_proof(bound_stack: Stack,
                                                         http: httpx.Client) -> None:
    token = bound_stack.token("aws", cnf=jkt_of(KEY.public), key=new_key())  # not the issuer's
    response = send(bound_stack, http, token, proof="not-a-proof")
    assert response.status_code == 401
    assert response.json()["reason"] == "unknown_kid"


def test_the_static_baseline_is_unchanged(bound_stack: Stack, http: httpx.Client) -> None:
    response = send(bound_stack, http, STATIC, scheme="Bearer")
    assert response.status_code == 200, response.text
    [record] = bound_stack.records(response)
    assert record.performed_by == "service-account:infrabot"


def test_a_service_may_take_unbound_tokens_during_a_migration(
        stack_factory: Callable[..., Stack], http: httpx.Client, tmp_path: Path) -> None:
    """``dpop: optional`` in the directory: unbound bearer tokens are taken at that service,
    bound tokens still need their proof."""
    workflows = tmp_path / "workflows"
    shutil.copytree(Settings().workflows_dir, workflows)
    directory = workflows / "directory.yaml"
    directory.write_text(directory.read_text().replace(
        "  aws:\n    scopes:", "  aws:\n    dpop: optional\n    scopes:"))
    stack = stack_factory(dpop_binding=True, workflows_dir=workflows)
    assert send(stack, http, stack.token("aws"), scheme="Bearer").status_code == 200
    bound = stack.token("aws", cnf=jkt_of(KEY.public))
    dpop_refusal(stack, send(stack, http, bound, scheme="Bearer"), "invalid_token",
                 "dpop_bound_token_as_bearer")
