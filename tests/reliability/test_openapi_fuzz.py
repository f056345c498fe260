"""Schema-driven fuzzing (schemathesis) of every server's own OpenAPI document on a running
embedded system: the authorization server, the four services and the webhook receiver.

Each operation of ``/openapi.json`` gets requests generated from its documented parameters and
bodies, sent over real HTTP, twice over:

* without credentials (or with a random bearer where the generator makes one);
* with valid ones: a service token holding every scope of that service (InfraBot for sam, prod,
  CI), a fresh ``private_key_jwt`` client assertion in every authorization-server form and a
  valid subject token where one is asked for, and the right HMAC signature on every webhook.

Every answer must not be a 5xx, must have a documented status code and content type, and must
match the documented response schema. Examples per operation: 8 by default (derandomized, so CI
sees the same cases), 60 with ``--reliability-large`` (random).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from e2e._harness import SECRET, embedded_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet

from infrabot.system import System, running_system
from orchestrator.ci import sign
from orchestrator.identity import CLIENT_ASSERTION_TYPE
from reliability._probes import probe_context, system_clients

SERVERS = ("auth", "datadog", "github", "aws", "pagerduty", "webhooks")
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
ALL_SCOPES = ["urn:infra:monitoring:read", "urn:infra:monitoring:mute", "urn:infra:repo:read",
              "urn:infra:deploy:comment", "urn:infra:deploy:create",
              "urn:infra:infrastructure:read", "urn:infra:infrastructure:tag",
              "urn:infra:infrastructure:clean", "urn:infra:incident:read",
              "urn:infra:incident:write", "urn:infra:incident:resolve"]

# Path parameters that name something the mock services hold (the post-deploy story's data),
# used for about half the cases with credentials so that they reach existing resources too.
KNOWN: dict[str, object] = {"owner": "acme", "repo": "service-x", "pull_number": 124,
                            "issue_number": 124, "deployment_id": 9001, "id": "P7X9K2Q",
                            "monitor_id": 1001, "branch": "feature-x"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    settings_ = embedded_settings(tmp_path_factory.mktemp("fuzz") / "state")
    with running_system(settings_, embedded_worker=False) as running:
        yield running


@pytest.fixture(scope="module")
def credentials(system: System) -> dict[str, str]:
    """Per service, a token with all its scopes; ``root``: a hand-off token InfraBot holds."""
    clients = system_clients(system)
    endpoints = system.endpoints()
    with clients("client:orchestrator") as orchestrator:
        root = orchestrator.root_token("user:sam", ALL_SCOPES, probe_context("run-fuzz"),
                                       "agent:infrabot")["access_token"]
    out = {"root": str(root)}
    with clients("agent:infrabot") as infrabot:
        for name in ("datadog", "github", "aws", "pagerduty"):
            out[name] = str(infrabot.exchange(root, resource=endpoints[name])["access_token"])
    return out


def with_credentials(system: System, server: str, credentials: dict[str, str],
                     kwargs: dict[str, Any], body: Any) -> dict[str, Any]:
    """The request's transport arguments with valid credentials put in."""
    headers = dict(kwargs.get("headers") or {})
    if server in ("datadog", "github", "aws", "pagerduty"):
        headers["Authorization"] = f"Bearer {credentials[server]}"
    elif server == "auth":
        if isinstance(body, dict):
            with system_clients(system)("agent:infrabot") as infrabot:
                assertion = infrabot.assertion()
            body = {**body, "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertion, "client_id": "agent:infrabot"}
            if "subject_token" in body or "token" in body:
                body = {**body, **{k: credentials["root"] for k in ("subject_token", "token")
                                   if k in body}}
            kwargs = {**kwargs, "data": body}
            kwargs.pop("json", None)
        headers["Authorization"] = f"Bearer {credentials['aws']}"
    elif server == "webhooks" and not isinstance(body, NotSet):
        raw = json.dumps(body).encode()
        headers.update({"X-Hub-Signature-256": sign(SECRET.encode(), raw),
                        "Content-Type": "application/json"})
        kwargs = {**kwargs, "data": raw}
        kwargs.pop("json", None)
    return {**kwargs, "headers": headers}


def fuzz(operation: Any, base: str, session: requests.Session,
         statuses: collections.Counter[int], large: bool,
         credentials: Callable[[dict[str, Any], Any], dict[str, Any]] | None) -> None:
    """Generated requests for one operation, sent and checked (hypothesis raises the first
    failure, shrunk)."""
    @settings(max_examples=60 if large else 8, deadline=None, database=None,
              derandomize=not large, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        if credentials is not None and case.path_parameters and data.draw(st.booleans()):
            case.path_parameters = {k: KNOWN.get(k, v) for k, v in case.path_parameters.items()}
        kwargs = case.as_transport_kwargs(base_url=base)
        if credentials is not None:
            kwargs = credentials(kwargs, case.body)
        response = session.request(**kwargs, timeout=10, allow_redirects=False)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.parametrize("valid", [False, True], ids=["anonymous", "valid-credentials"])
@pytest.mark.parametrize("server", SERVERS)
def test_every_answer_matches_the_openapi_document(system: System, credentials: dict[str, str],
                                                   server: str, valid: bool,
                                                   large: bool) -> None:
    base = system.endpoints()[server]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = requests.Session()
    session.trust_env = False
    failures: dict[str, str] = {}
    statuses: collections.Counter[int] = collections.Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, server

    def add_credentials(kwargs: dict[str, Any], body: Any) -> dict[str, Any]:
        return with_credentials(system, server, credentials, kwargs, body)

    for operation in operations:
        try:
            fuzz(operation, base, session, statuses, large, add_credentials if valid else None)
        except Exception as exc:  # noqa: BLE001 - collect every operation's finding
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    session.close()
    print(f"\n{server} ({'valid' if valid else 'anonymous'}): {sorted(statuses.items())}")
    assert failures == {}, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
    if valid:  # the credentials got requests past authentication, into the handlers
        assert any(200 <= status < 300 for status in statuses), statuses
    elif server not in ("auth", "webhooks"):
        assert set(statuses) <= {400, 401, 404, 405, 413, 422}, statuses


def test_the_documents_are_served_and_name_every_route(system: System) -> None:
    """Each server publishes its document; the fuzzing above covers every operation in it."""
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        for server in SERVERS:
            document = http.get(system.endpoints()[server] + "/openapi.json")
            assert document.status_code == 200, server
            assert document.json()["paths"], server
