"""A run rooted in a real token from a real, certified OpenID Provider (oidc-provider on Node
20): ``POST /runs`` on the receiver of the whole system running embedded, through the three
agents and the four services, and every refusal of ``POST /runs`` with its exact reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infrabot.system import System, running_system
from orchestrator.audit import contains_raw_jwt
from orchestrator.identity import Directory
from orchestrator.runs import RootGranted, RunStore, SpanLog, SpanRecord
from orchestrator.workflows import load_directory, load_workflows, required_scopes
from tests.e2e._harness import COMMIT, PR, RUN_TIMEOUT, embedded_settings
from tests.federation._op import RESOURCE, OpenIDProvider, openid_provider
from tests.federation.conftest import REPO, workflows_with

ALL_SCOPES = [f"urn:infra:{s}" for s in (
    "monitoring:read", "monitoring:mute", "repo:read", "deploy:comment", "deploy:create",
    "infrastructure:read", "infrastructure:tag", "infrastructure:clean", "incident:read",
    "incident:write", "incident:resolve", "secrets:manage")]
BODY = {"workflow": "post-deploy", "parameters": {
    "environment": "staging", "repository": "acme/service-x", "commit": COMMIT, "pr": PR}}


def needed() -> list[str]:
    directory = load_directory(REPO / "workflows" / "directory.yaml")
    return required_scopes(load_workflows(REPO / "workflows", directory)["post-deploy"])


@pytest.fixture(scope="module")
def op() -> Iterator[OpenIDProvider]:
    with openid_provider(["sam-laptop", "alex-laptop", "mallory-laptop"], ALL_SCOPES) as server:
        yield server


@pytest.fixture(scope="module")
def system(op: OpenIDProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("op")
    entry = {"issuer": op.issuer, "discovery_url": f"{op.issuer}/.well-known/openid-configuration",
             "audience": RESOURCE, "profile": "generic", "user_claim": "sub",
             "permission_claims": ["scope"],
             "subjects": {"sam-laptop": "user:sam", "alex-laptop": "user:alex",
                          "mallory-laptop": "user:mallory"}}
    workflows = workflows_with(tmp / "workflows", {"acme-op": entry})
    # post-deploy started by hand here: the shipped one is left to CI (trigger_not_handled)
    flow = workflows / "post-deploy.yaml"
    shipped = "  triggers: [ci_pipeline]\n"
    assert shipped in flow.read_text()
    flow.write_text(flow.read_text().replace(shipped, "  triggers: [ci_pipeline, manual]\n"))
    with running_system(embedded_settings(tmp / "state", workflows_dir=workflows)) as running:
        yield running


def kept_spans(system: System, trace_id: str | None) -> list[SpanRecord]:
    """The trace's spans once the last service call's is written (batches leave every
    second; bounded wait)."""
    assert trace_id
    deadline = time.monotonic() + 20
    while True:
        with RunStore(system.settings.runs_target) as store:
            spans = SpanLog(store).of_trace(trace_id)
        if any(s.name == "enforce pagerduty" for s in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def start(system: System, token: str | None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{system.webhooks_url}/runs", json=BODY if body is None else body,
                      headers=headers, timeout=30)


def test_a_real_providers_token_roots_the_whole_chain(op: OpenIDProvider, system: System) -> None:
    token = op.token("sam-laptop", ALL_SCOPES)
    response = start(system, token)
    assert response.status_code == 202, response.text
    run = system.runtime.runs.wait(response.json()["run_id"], timeout=RUN_TIMEOUT)
    assert run.status == "succeeded", run
    assert (run.user, run.trigger) == ("user:sam", "user_request")
    (root,) = [e.detail for e in run.events if isinstance(e.detail, RootGranted)]
    assert root.claims["ctx"]["idp"] == op.issuer
    assert root.claims["ctx"]["idp_subject"] == "sam-laptop"
    assert "urn:infra:secrets:manage" not in root.granted  # asserted, held, never needed
    records = system.stack.audit.query(run_id=run.run_id)
    services = {r.service for r in records}
    assert {"authserver", "datadog", "github", "aws", "pagerduty"} <= services
    assert {r.principal for r in records} == {f"user:sam (via {op.issuer})"}
    chains = {tuple(r.chain) for r in records if r.service == "pagerduty"}
    assert chains == {("agent:cleanup", "agent:infrabot", "user:sam")}  # a join: from the fork
    (request,) = [r for r in system.stack.audit.query(user="user:sam")
                  if r.action == "run_request" and r.run_id == run.run_id]
    assert (request.decision, request.reason, request.context["idp"]) == \
        ("allow", "accepted", op.issuer)
    data = system.settings.audit_db.read_bytes()
    assert token.encode() not in data and token.rsplit(".", 1)[1].encode() not in data
    spans = kept_spans(system, run.trace_id)  # one trace from POST /runs, the token in none
    assert {"POST /runs", "run post-deploy", "enforce pagerduty"} <= {s.name for s in spans}
    assert all(token.rsplit(".", 1)[1] not in str(s.attributes) for s in spans)
    assert not any(contains_raw_jwt(str(s.attributes)) for s in spans)


def test_the_providers_scopes_narrow_what_the_run_gets(op: OpenIDProvider, system: System) -> None:
    """Sam asks the provider for monitoring:read alone: the root grant keeps just that, and the
    run stops at the first step needing more."""
    response = start(system, op.token("sam-laptop", ["urn:infra:monitoring:read"]))
    assert response.status_code == 202, response.text
    run = system.runtime.runs.wait(response.json()["run_id"], timeout=RUN_TIMEOUT)
    (root,) = [e.detail for e in run.events if isinstance(e.detail, RootGranted)]
    assert root.granted == ["urn:infra:monitoring:read"]
    assert run.status == "denied"


def test_a_user_request_is_held_to_the_rules_of_a_manual_trigger(
        op: OpenIDProvider, system: System) -> None:
    """In prod, writes need CI: a person's own token gets only the reads."""
    body = {**BODY, "parameters": {**BODY["parameters"], "environment": "prod"}}
    response = start(system, op.token("sam-laptop", ALL_SCOPES), body)
    run = system.runtime.runs.wait(response.json()["run_id"], timeout=RUN_TIMEOUT)
    (root,) = [e.detail for e in run.events if isinstance(e.detail, RootGranted)]
    directory: Directory = system.stack.directory
    assert root.granted and all(not s.endswith(("create", "comment", "tag", "clean",
                                                   "resolve", "write", "mute"))
                                   for s in root.granted)
    assert set(root.dropped) == {s for s in needed() if s not in root.granted}
    assert directory.context_rules[0].require_trigger == "ci_pipeline"
    assert run.status == "denied"


@pytest.mark.parametrize(("token", "body", "status", "reason"), [
    (None, None, 401, "missing_token"),
    ("not-a-token", None, 401, "malformed"),
    ("mallory-laptop", None, 403, "unknown_user"),
    ("sam-laptop", b"{", 400, "malformed_request"),
    ("sam-laptop", {"workflow": "post-deploy", "parameters": {"environment": "staging"}}, 400,
     "malformed_request"),
    ("sam-laptop", {**BODY, "workflow": "no-such-workflow"}, 422, "unknown_workflow"),
    ("sam-laptop", {**BODY, "parameters": {**BODY["parameters"], "environment": "canary"}}, 422,
     "environment_not_handled"),
])
def test_refusals(op: OpenIDProvider, system: System, token: str | None, body: Any,
                  status: int, reason: str) -> None:
    bearer = op.token(token, ALL_SCOPES) if token and token.endswith("-laptop") else token
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    content = body if isinstance(body, bytes) else None
    response = httpx.post(f"{system.webhooks_url}/runs", headers=headers, timeout=30,
                          content=content, json=None if content else (body or BODY))
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    last = max(system.stack.audit.query(), key=lambda r: r.id)
    assert (last.action, last.decision, last.reason) == ("run_request", "deny", reason)


def test_a_token_from_an_untrusted_issuer(system: System) -> None:
    with openid_provider(["sam-laptop"], ALL_SCOPES) as other:
        response = start(system, other.token("sam-laptop", ALL_SCOPES))
    assert (response.status_code, response.json()["reason"]) == (401, "untrusted_issuer")
