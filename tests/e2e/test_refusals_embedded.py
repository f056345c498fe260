"""Refusals end to end, in one process: each run ends in the right terminal status with the
exact reason, the refused step changes nothing, and the audit trail names the refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

from e2e._harness import (
    PR,
    REPO,
    RUN_TIMEOUT,
    SAM,
    accepted_run_id,
    assert_denied,
    deployment,
    embedded_settings,
    events_of,
    first_time_counts,
    manual_workflow_run,
    post_webhook,
)
from infrabot.system import System, running_system
from orchestrator.runs import HandedOff

SERVICE_X = ("acme", "service-x")
NARROW_WORKFLOW = """\
# Like post-deploy, but InfraBot hands ArgoCD less than ArgoCD's steps need.
name: narrow-handoff
trigger:
  events: [deployment]
  environments: [canary]
  triggers: [ci_pipeline]
agents:
  - agent: agent:infrabot
    steps:
      - action: github.pull.read
        params: {owner: "${owner}", repo: "${repo}", pull_number: "${pr}"}
    hand_off: agent:argocd
    hand_off_scopes: [urn:infra:deploy:create]
  - agent: agent:argocd
    steps:
      - action: github.deployment_status.create
        params: {owner: "${owner}", repo: "${repo}", deployment_id: 9003, state: success}
      - action: aws.ec2.create_tags
        params:
          Resources: [i-0a1b2c3d4e5f60001]
          Tags: [{Key: deployed-commit, Value: "${commit}"}]
"""


def run_to_end(system: System, delivery: tuple[dict[str, str], bytes]) -> str:
    run_id = accepted_run_id(post_webhook(system.webhooks_url, delivery))
    system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)
    return run_id


def denials(system: System, run_id: str) -> list[tuple[str, str, str | None, str]]:
    return [(r.service, r.action, r.performed_by, r.reason)
            for r in system.stack.audit.query(run_id=run_id, decision="deny")]


def test_user_without_deploy_permission_is_stopped_at_the_first_hop_needing_it(
        tmp_path: Path) -> None:
    """alex may look and comment but not deploy: the root grant drops the deploy and
    infrastructure scopes, so InfraBot's hand-off asking for them is refused."""
    with running_system(embedded_settings(tmp_path / "state")) as system:
        run_id = run_to_end(system, deployment("alex"))
        run = system.runtime.runs.get(run_id)
        assert run is not None and run.user == "user:alex"

        assert_denied(run, "agent:infrabot exchange for hand-off to agent:argocd: "
                           "invalid_scope (scope_not_grantable)")
        (root,) = events_of(run, "root_granted")
        assert root.dropped == ["urn:infra:deploy:create", "urn:infra:infrastructure:tag",
                                   "urn:infra:infrastructure:clean",
                                   "urn:infra:incident:resolve"]
        assert sorted(root.granted) == ["urn:infra:deploy:comment",
                                           "urn:infra:infrastructure:read",
                                           "urn:infra:monitoring:read", "urn:infra:repo:read"]
        assert [(d.error, d.reason) for d in events_of(run, "exchange_denied")] == \
            [("invalid_scope", "scope_not_grantable")]
        assert events_of(run, "handed_off") == []
        assert {e.agent for e in run.events} == {None, "agent:infrabot"}
        assert denials(system, run_id) == [
            ("authserver", "token_exchange", "agent:infrabot", "scope_not_grantable")]
        # What alex may do happened once; nothing beyond it happened at all.
        assert first_time_counts(system.stack.audit.query(run_id=run_id)) == \
            {"metrics:query": 1, "pr:read": 1, "comment:post": 1}
        assert system.service_state("github").statuses[(*SERVICE_X, 9001)] == []
        assert system.service_state("aws").changes == []
        assert system.service_state("pagerduty").history == []


def test_manual_trigger_in_prod_cannot_write(tmp_path: Path) -> None:
    """A hand-started run in prod: policy narrows the root grant to reads, so the comment step
    is refused and the run ends denied; the read before it ran."""
    with running_system(embedded_settings(tmp_path / "state")) as system:
        run_id = run_to_end(system, manual_workflow_run("sam"))
        run = system.runtime.runs.get(run_id)
        assert run is not None and (run.workflow, run.trigger) == ("manual-check", "manual")

        assert_denied(run, "agent:infrabot exchange for github.comment.create: "
                           "invalid_scope (scope_not_grantable)")
        (root,) = events_of(run, "root_granted")
        assert root.dropped == ["urn:infra:deploy:comment"]
        assert [(d.for_, d.reason) for d in events_of(run, "exchange_denied")] == \
            [("github.comment.create", "scope_not_grantable")]
        assert denials(system, run_id) == [
            ("authserver", "token_exchange", "agent:infrabot", "scope_not_grantable")]
        assert first_time_counts(system.stack.audit.query(run_id=run_id)) == \
            {"metrics:query": 1}
        assert system.service_state("github").comments[(*SERVICE_X, PR)] == []


def test_agent_asking_for_more_than_it_was_handed_is_refused(tmp_path: Path) -> None:
    """InfraBot hands ArgoCD only deploy:create; ArgoCD's tagging step asks for
    infrastructure:tag and is refused (an escalation is refused, never trimmed)."""
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for path in (REPO / "workflows").glob("*.yaml"):
        shutil.copy(path, workflows / path.name)
    shutil.copytree(REPO / "workflows" / "services", workflows / "services")  # announce's chat
    (workflows / "narrow-handoff.yaml").write_text(NARROW_WORKFLOW)
    settings = embedded_settings(tmp_path / "state", workflows_dir=workflows)
    with running_system(settings) as system:
        run_id = run_to_end(system, deployment("sam", environment="canary"))
        run = system.runtime.runs.get(run_id)
        assert run is not None and run.workflow == "narrow-handoff"

        assert_denied(run, "agent:argocd exchange for aws.ec2.create_tags: "
                           "invalid_scope (scope_not_grantable)")
        (handed,) = events_of(run, "handed_off", "agent:infrabot")
        assert handed == HandedOff(to="agent:argocd", scope="urn:infra:deploy:create")
        assert [(d.requested, d.reason) for d in events_of(run, "exchange_denied")] == \
            [("urn:infra:infrastructure:tag", "scope_not_grantable")]
        assert denials(system, run_id) == [
            ("authserver", "token_exchange", "agent:argocd", "scope_not_grantable")]
        assert first_time_counts(system.stack.audit.query(run_id=run_id)) == \
            {"pr:read": 1, "deploy:create": 1}
        assert system.service_state("aws").changes == []


def test_chain_past_the_depth_limit_is_refused(tmp_path: Path) -> None:
    """With one actor at most in a chain, neither branch (each the second actor) can get a
    token; the join, which ends the run, acts on nothing. (With two, everything runs: the join
    continues from the fork point, so CleanupAgent is the second actor, not the third.)"""
    with running_system(embedded_settings(tmp_path / "state", max_depth=1)) as system:
        run_id = run_to_end(system, deployment("sam"))
        run = system.runtime.runs.get(run_id)
        assert run is not None

        assert run.status == "denied" and run.reason is not None
        assert run.reason.endswith("invalid_request (max_depth_exceeded)")
        assert sorted(e.agent for e in run.events if e.kind == "exchange_denied") == \
            ["agent:argocd", "agent:scanner"]
        assert sorted(denials(system, run_id)) == [
            ("authserver", "token_exchange", "agent:argocd", "max_depth_exceeded"),
            ("authserver", "token_exchange", "agent:scanner", "max_depth_exceeded")]
        assert first_time_counts(system.stack.audit.query(run_id=run_id)) == {
            "metrics:query": 1, "pr:read": 1, "comment:post": 1}
        assert system.service_state("aws").changes == []
        assert system.service_state("pagerduty").history == []
    with running_system(embedded_settings(tmp_path / "two", max_depth=2)) as system:
        run = system.runtime.runs.get(run_to_end(system, deployment("sam")))
        assert run is not None and (run.status, run.reason) == ("succeeded", "ok")


def test_replayed_webhook_starts_no_second_run(tmp_path: Path) -> None:
    with running_system(embedded_settings(tmp_path / "state")) as system:
        delivery = deployment("sam")
        first = post_webhook(system.webhooks_url, delivery)
        second = post_webhook(system.webhooks_url, delivery)

        run_id = accepted_run_id(first)
        assert second.status_code == 409
        assert (second.json()["error"], second.json()["reason"]) == \
            ("conflict", "replayed_delivery")
        run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)
        assert run.status == "succeeded"
        assert [r.run_id for r in system.runtime.runs.list(10)] == [run_id]
        webhook = system.stack.audit.query(service="webhooks")
        assert [(r.decision, r.reason, r.status) for r in webhook] == \
            [("allow", "accepted", 202), ("deny", "replayed_delivery", 409)]
        assert len([r for r in system.stack.audit.query(action="root_grant")
                    if r.on_behalf_of == SAM]) == 1
        assert len(system.service_state("github").comments[(*SERVICE_X, PR)]) == 1
