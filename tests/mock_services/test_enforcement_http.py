"""Every refusal of the shared enforcement layer, over real HTTP, at each of the four services:
exact status, WWW-Authenticate challenge and reason code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mock_services import SERVICE_NAMES, build_request
from orchestrator.catalog import get_action
from orchestrator.identity import SigningKey, generate_private_key, signing_key_of

READ: dict[str, tuple[str, dict[str, Any]]] = {
    "datadog": ("datadog.monitor.read", {"monitor_id": 1001}),
    "github": ("github.pull.read", {"owner": "acme", "repo": "service-x", "pull_number": 124}),
    "aws": ("aws.ec2.describe_instances", {"InstanceIds": ["i-0a1b2c3d4e5f60001"]}),
    "pagerduty": ("pagerduty.incident.read", {"id": "P7X9K2Q"}),
}
WRITE: dict[str, tuple[str, dict[str, Any]]] = {
    "datadog": ("datadog.monitor.mute", {"monitor_id": 1002}),
    "github": ("github.comment.create",
               {"owner": "acme", "repo": "service-x", "issue_number": 124, "body": "ok"}),
    "aws": ("aws.ec2.create_tags", {"Resources": ["i-0a1b2c3d4e5f60002"],
                                    "Tags": [{"Key": "checked", "Value": "yes"}]}),
    "pagerduty": ("pagerduty.note.create", {"id": "P7X9K2Q", "content": "looking"}),
}
# The same writes on resources staging owns (the WRITE ones are prod's).
STAGING_WRITE: dict[str, tuple[str, dict[str, Any]]] = {
    "datadog": ("datadog.monitor.mute", {"monitor_id": 1101}),
    "github": WRITE["github"],  # a pull request belongs to a repository, not an environment
    "aws": ("aws.ec2.create_tags", {"Resources": ["i-0b1c2d3e4f5a60001"],
                                    "Tags": [{"Key": "checked", "Value": "yes"}]}),
    "pagerduty": ("pagerduty.incident.create", {"title": "staging is slow",
                                                "service_id": "PSVCXS1"}),
}
OTHER = {"datadog": "github", "github": "aws", "aws": "pagerduty", "pagerduty": "datadog"}
services = pytest.mark.parametrize("service", SERVICE_NAMES)


def refused(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason, body
    assert set(body) >= {"error", "error_description", "reason"}
    return body


def invalid_token(response: httpx.Response, service: str, reason: str) -> None:
    body = refused(response, 401, reason)
    assert body["error"] == "invalid_token"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{service}", error="invalid_token", '
                                'error_description="')


def invalid_request(response: httpx.Response, service: str, reason: str) -> None:
    body = refused(response, 400, reason)
    assert body["error"] == "invalid_request"
    assert response.headers["www-authenticate"].startswith(
        f'Bearer realm="{service}", error="invalid_request"')


def forbidden(response: httpx.Response, service: str, scope: str, reason: str) -> None:
    body = refused(response, 403, reason)
    assert body["error"] == "insufficient_scope"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{service}", error="insufficient_scope"')
    assert challenge.endswith(f'scope="{scope}"')


@services
def test_a_delegated_call_is_allowed(stack, http, service):
    name, params = READ[service]
    response = stack.call(http, name, params)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]


@services
def test_a_prod_write_from_ci_is_allowed(stack, http, service):
    name, params = WRITE[service]
    assert stack.call(http, name, params).status_code in (200, 201)


@services
def test_no_credential_gets_a_bare_challenge(stack, http, service):
    name, params = READ[service]
    response = stack.call(http, name, params, token="")
    refused(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == f'Bearer realm="{service}"'


@services
@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token abc",
                                    "Bearer abc%def", "Bearer  x y"])
def test_a_malformed_authorization_header_is_invalid_request(stack, http, service, header):
    name, params = READ[service]
    response = stack.call(http, name, params, token="", headers={"Authorization": header})
    invalid_request(response, service, "malformed_authorization")


@services
def test_a_token_in_the_header_and_the_query_is_refused(stack, http, service):
    token = stack.token(service)
    method, path, query, body = build_request(*READ[service])
    response = http.request(method, stack.urls[service] + path,
                            params={**query, "access_token": token}, json=body,
                            headers={"Authorization": f"Bearer {token}"})
    invalid_request(response, service, "multiple_credentials")


@services
def test_two_authorization_headers_are_refused(stack, http, service):
    method, path, query, body = build_request(*READ[service])
    token = stack.token(service)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = http.request(method, stack.urls[service] + path, params=query, json=body,
                            headers=headers)
    invalid_request(response, service, "multiple_credentials")


def test_a_token_in_the_header_and_a_form_body_is_refused(stack, http):
    token = stack.token("pagerduty")
    response = http.post(stack.urls["pagerduty"] + "/incidents/P7X9K2Q/notes",
                         data={"access_token": token, "note": "x"},
                         headers={"Authorization": f"Bearer {token}"})
    invalid_request(response, "pagerduty", "multiple_credentials")


def test_a_token_only_in_the_query_is_refused(stack, http):
    token = stack.token("datadog")
    response = http.get(stack.urls["datadog"] + "/api/v1/monitor/1001",
                        params={"access_token": token})
    invalid_request(response, "datadog", "unsupported_token_location")


@services
def test_an_expired_token_is_refused(stack, http, service):
    name, params = READ[service]
    token = stack.token(service, iat=1_700_000_000, lifetime=600)
    invalid_token(stack.call(http, name, params, token=token), service, "token_expired")


@services
def test_a_token_for_another_service_is_refused(stack, http, service):
    name, params = READ[service]
    other = OTHER[service]
    token = stack.token(other, scope=get_action(name).scope)
    invalid_token(stack.call(http, name, params, token=token), service, "audience_mismatch")


@services
def test_a_hand_off_token_is_not_a_bearer_credential(stack, http, service):
    name, params = READ[service]
    token = stack.token(service, aud=stack.settings.issuer_url)
    invalid_token(stack.call(http, name, params, token=token), service, "audience_mismatch")


@services
def test_a_bad_signature_is_refused(stack, http, service):
    name, params = READ[service]
    other = signing_key_of(generate_private_key("ES256"), "ES256")
    forged = SigningKey(kid=stack.ring.current.kid, alg="ES256", private=other.private,
                        public=other.public)
    token = stack.token(service, key=forged)
    invalid_token(stack.call(http, name, params, token=token), service, "bad_signature")


@services
def test_a_missing_scope_is_403(stack, http, service):
    name, params = WRITE[service]
    scope = get_action(name).scope
    read_only = get_action(READ[service][0]).scope
    response = stack.call(http, name, params, scope=read_only)
    forbidden(response, service, scope, "insufficient_scope")


@services
def test_a_prod_write_triggered_by_hand_is_forbidden(stack, http, service):
    name, params = WRITE[service]
    response = stack.call(http, name, params, ctx={"trigger": "manual"})
    forbidden(response, service, get_action(name).scope, "context_forbidden")


@services
def test_a_read_triggered_by_hand_and_a_staging_write_are_allowed(stack, http, service):
    name, params = READ[service]
    assert stack.call(http, name, params, ctx={"trigger": "manual"}).status_code == 200
    name, params = STAGING_WRITE[service]
    response = stack.call(http, name, params, ctx={"trigger": "manual", "environment": "staging"})
    assert response.status_code in (200, 201), response.text


@services
def test_an_actor_the_directory_does_not_allow_is_forbidden(stack, http, service):
    name, params = READ[service]
    scope = get_action(name).scope
    token = stack.token(service, scope=scope, actors=("agent:ghost",))
    forbidden(stack.call(http, name, params, token=token), service, scope, "actor_not_allowed")


def test_the_presenting_client_must_be_the_current_actor(stack, http):
    response = stack.call(http, "datadog.monitor.read", {"monitor_id": 1001},
                          client_id="agent:argocd")
    forbidden(response, "datadog", "urn:infra:monitoring:read", "actor_not_allowed")


def test_cleanup_may_not_query_monitoring(stack, http):
    response = stack.call(http, "datadog.monitor.read", {"monitor_id": 1001},
                          actors=("agent:cleanup", "agent:argocd", "agent:infrabot"))
    forbidden(response, "datadog", "urn:infra:monitoring:read", "actor_not_allowed")


@services
def test_a_user_who_lost_the_permission_is_forbidden(stack, http, service):
    name, params = WRITE[service]
    scope = get_action(name).scope
    # alex holds no write scope of these services except comment and incident:write.
    user = "user:former-employee" if scope in ("urn:infra:deploy:comment",
                                              "urn:infra:incident:write") else "user:alex"
    response = stack.call(http, name, params, sub=user)
    forbidden(response, service, scope, "user_lacks_permission")


@services
def test_a_revoked_token_is_refused(stack, http, service):
    name, params = READ[service]
    token = stack.token(service, jti="revoked-" + service + "-token1")
    assert stack.call(http, name, params, token=token).status_code == 200
    stack.revocation.revoke_jti("revoked-" + service + "-token1", expires_at=2**31)
    invalid_token(stack.call(http, name, params, token=token), service, "token_revoked")


@services
def test_a_token_exchanged_from_a_revoked_one_is_refused(stack, http, service):
    name, params = READ[service]
    parent = f"parent-of-{service}-1"
    stack.revocation.revoke_jti(parent, expires_at=2**31)
    token = stack.token(service, ancestors=("root-token-1234", parent))
    invalid_token(stack.call(http, name, params, token=token), service, "ancestor_revoked")


@services
def test_a_token_of_a_revoked_run_is_refused(stack, http, service):
    name, params = READ[service]
    run = f"run-revoked-{service}"
    stack.revocation.revoke_run(run)
    token = stack.token(service, ctx={"run_id": run})
    invalid_token(stack.call(http, name, params, token=token), service, "run_revoked")


@services
def test_a_token_of_a_revoked_user_is_refused(stack, http, service):
    name, params = READ[service]
    token = stack.token(service, sub="user:robin", actors=("agent:infrabot",))
    stack.revocation.revoke_user("user:robin")
    invalid_token(stack.call(http, name, params, token=token), service, "user_revoked")
    fresh = stack.token(service, sub="user:robin")  # minted at the new version
    assert stack.call(http, name, params, token=fresh).status_code == 200


@services
def test_a_chain_deeper_than_the_limit_is_refused(stack, http, service):
    name, params = READ[service]
    actors = tuple(f"agent:hop{i}" for i in range(stack.settings.max_depth + 1))
    token = stack.token(service, actors=actors)
    invalid_token(stack.call(http, name, params, token=token), service, "max_depth_exceeded")
