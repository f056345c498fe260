"""The trigger a run is rooted in fails closed: a deployment is ``ci_pipeline`` only when a CI
app the directory names created it, and a workflow_run only when the directory lists the event
kind that started it. Anything else is ``manual``, whatever the payload claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.ci import build_deployment_event, build_workflow_run_event, encode
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import load_directory

from .conftest import SECRET, Webhook, running_webhook


@pytest.mark.parametrize(("creator", "claimed", "trigger"), [
    ("sam", "ci_pipeline", "manual"),               # a person says it is CI: it is not
    ("robin", "manual", "manual"),
    ("github-actions[bot]", "ci_pipeline", "manual"),  # an app the directory does not name
    ("infrabot-ci[bot]", "ci_pipeline", "ci_pipeline"),
    ("InfraBot-CI[bot]", "ci_pipeline", "ci_pipeline"),  # logins are case-insensitive
    ("infrabot-ci[bot]", "manual", "manual"),       # CI may say a deploy was by hand
    ("sam", "user_request", "manual"),              # a person's claim is not read at all
    ("sam", "deploy", "manual"),
])
def test_a_deployment_is_ci_only_when_a_named_ci_app_created_it(
        webhook: Webhook, creator: str, claimed: str, trigger: str) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7",
                                           trigger=claimed, creator=creator, secret=SECRET)
    assert webhook.post(headers, body).status_code == 202
    [event] = webhook.starter.events
    assert event.trigger == trigger
    [record] = webhook.records()
    assert record.context["trigger"] == trigger


def test_a_deployment_without_a_creator_is_manual(webhook: Webhook) -> None:
    _, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7")
    payload = json.loads(body)
    del payload["deployment"]["creator"]
    assert webhook.post(*encode("deployment", payload, secret=SECRET)).status_code == 202
    assert webhook.starter.events[0].trigger == "manual"


@pytest.mark.parametrize(("run_event", "trigger"), [
    ("push", "ci_pipeline"), ("workflow_dispatch", "manual"), ("pull_request_target", "manual"),
    ("schedule", "manual"), ("repository_dispatch", "manual"),
])
def test_a_workflow_run_is_ci_only_for_the_event_kinds_the_directory_lists(
        webhook: Webhook, run_event: str, trigger: str) -> None:
    headers, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7",
                                             run_event=run_event, secret=SECRET)
    assert webhook.post(headers, body).status_code == 202
    assert webhook.starter.events[0].trigger == trigger


@pytest.mark.parametrize(("branch", "trigger"), [
    ("main", "ci_pipeline"), ("sam/scratch", "manual"), ("main-copy", "manual"),
])
def test_a_push_run_is_ci_only_on_a_branch_the_directory_lists(
        webhook: Webhook, branch: str, trigger: str) -> None:
    """Whoever can push a branch names its workflow: a push to any branch running a workflow
    called deploy-prod is not CI's deploy to prod."""
    headers, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7", ref=branch,
                                             secret=SECRET)
    assert webhook.post(headers, body).status_code == 202
    assert webhook.starter.events[0].trigger == trigger


def test_without_ci_branches_a_push_on_any_branch_is_ci(
        tmp_path: Path, directory: Directory) -> None:
    with running_webhook(tmp_path, directory.model_copy(update={"ci_branches": None})) as hook:
        headers, body = build_workflow_run_event("sam", "service-x", "prod", "9f2c1e7",
                                                 ref="sam/scratch", secret=SECRET)
        assert hook.post(headers, body).status_code == 202
        assert hook.starter.events[0].trigger == "ci_pipeline"


@pytest.mark.parametrize("claimed", ["user_request", "root"])
def test_a_deployment_claims_no_trigger_but_ci_pipeline_or_manual(
        webhook: Webhook, claimed: str) -> None:
    """``user_request`` is a person's own token at POST /runs, never a webhook's to claim."""
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7",
                                           trigger=claimed, creator="infrabot-ci[bot]",
                                           secret=SECRET)
    response = webhook.post(headers, body)
    assert (response.status_code, response.json()["reason"]) == (400, "malformed_event")
    assert response.json()["field"] == "deployment.payload.trigger"
    assert webhook.starter.events == []


def test_a_directory_that_names_no_ci_makes_every_event_manual(
        tmp_path: Path, directory: Directory) -> None:
    bare = directory.model_copy(update={"ci_apps": (), "ci_events": ()})
    with running_webhook(tmp_path, bare) as webhook:
        for build in (build_deployment_event, build_workflow_run_event):
            headers, body = build("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
            assert webhook.post(headers, body).status_code == 202
        assert [e.trigger for e in webhook.starter.events] == ["manual", "manual"]


def test_the_shipped_directory_names_the_ci_app_and_push(directory: Directory) -> None:
    assert directory.ci_apps == ("infrabot-ci[bot]",)
    assert directory.ci_events == ("push",)
    assert directory.ci_branches == ("main",)


@pytest.mark.parametrize(("line", "message"), [
    ("ci_events: [push, workflow_dispatch]",
     "ci_events.1: Value error, workflow_dispatch runs are started by a person, not by CI"),
    ('ci_apps: ["not a login"]', "ci_apps.0: String should match pattern"),
])
def test_a_directory_naming_a_person_s_event_or_a_bad_login_is_refused(
        tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(f"users: {{}}\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_directory(path)
    assert f"{path}:2: {message}" in str(caught.value)
