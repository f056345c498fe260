"""Workflows as graphs in one process, against the real servers: post-deploy's fan-out and join,
each branch's own hand-off (bound to its own agent, useless to its sibling), the join that never
holds more than the fork point and dies with any branch, the rollback condition, and an agent
that exists only in a test's own directory file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery.signals import before_task_publish

from agents.tasks import task_name
from e2e._harness import (
    COMMIT,
    RUN_TIMEOUT,
    SAM,
    embedded_settings,
    events_of,
    regressed_run,
    run_of,
)
from infrabot.system import System, running_system
from orchestrator.ci import CIEvent
from orchestrator.errors import InvalidRequest, InvalidScope, InvalidTarget
from orchestrator.identity import Context
from orchestrator.runs import Exchanged, Run

REPO_WORKFLOWS = Path(__file__).parents[2] / "workflows"
BRANCHES = ("agent:argocd", "agent:scanner")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(embedded_settings(tmp_path_factory.mktemp("graph") / "state")) as s:
        yield s


def hand_offs(run: Run, agent: str) -> dict[str, dict[str, Any]]:
    """The claims of each token ``agent`` handed off, by the agent it was handed to."""
    return {d.hand_off: d.claims for d in events_of(run, "exchanged", agent)
            if isinstance(d, Exchanged) and d.hand_off is not None and d.claims}


def test_post_deploy_forks_to_two_branches_and_the_join_continues_from_the_fork(
        system: System) -> None:
    run = run_of(system)
    assert (run.status, run.reason) == ("succeeded", "ok")
    taken = events_of(run, "branch_taken", "agent:infrabot")
    assert [(t.to, t.join) for t in taken] == [(list(BRANCHES), "agent:cleanup")]
    assert [d.to for d in events_of(run, "handed_off")] == [*BRANCHES, "agent:cleanup"]
    assert events_of(run, "exchanged", "agent:rollback") == []

    minted = hand_offs(run, "agent:infrabot")
    fork_token = events_of(run, "root_granted")[0].claims
    for branch, scopes in (("agent:argocd", "urn:infra:deploy:create urn:infra:infrastructure:tag"),
                           ("agent:scanner", "urn:infra:repo:read urn:infra:infrastructure:read")):
        claims = minted[branch]
        # its own exchange: may_act that branch, bound to that branch's DPoP key, narrowed
        assert claims["may_act"] == {"sub": branch}
        assert claims["cnf"]["jkt"] == system.runtime.dpop(branch).jkt
        assert set(claims["scope"].split()) == set(scopes.split())
    assert minted["agent:argocd"]["cnf"] != minted["agent:scanner"]["cnf"]
    join = minted["agent:cleanup"]
    # the join: from the fork point, naming every branch token; never more than the fork held
    assert join["act"] == {"sub": "agent:infrabot"}
    assert {minted[b]["jti"] for b in BRANCHES} <= set(join["ancestors"])
    assert set(join["scope"].split()) <= set(fork_token["scope"].split())
    assert join["cnf"]["jkt"] == system.runtime.dpop("agent:cleanup").jkt
    cleanup = events_of(run, "exchanged", "agent:cleanup")
    assert cleanup and all(minted[b]["jti"] in d.claims["ancestors"]
                           for d in cleanup for b in BRANCHES)


def test_a_latency_regression_takes_the_rollback_branch(system: System) -> None:
    run = regressed_run(system)
    assert (run.status, run.reason) == ("succeeded", "ok")
    assert [(t.to, t.join) for t in events_of(run, "branch_taken")] == \
        [(["agent:rollback"], None)]
    assert [s.action for s in events_of(run, "step_skipped")] == ["github.comment.create"]
    assert [c.action for c in events_of(run, "called", "agent:rollback")] == \
        ["deploy:create", "tags:create"]
    assert all(events_of(run, "exchanged", a) == [] for a in (*BRANCHES, "agent:cleanup"))


def test_a_sibling_s_token_is_useless_to_the_other_branch(system: System) -> None:
    """ArgoCD's branch token, taken from its message as the fan-out is published, presented by
    the scanner (with its own client key and DPoP key): refused, may_act names ArgoCD."""
    caught: list[BaseException | str] = []
    wanted = task_name(system.celery, "agent:argocd")
    datadog = system.runtime.service_url("datadog")

    def replay(sender: str | None = None, body: Any = None, **_: Any) -> None:
        if sender != wanted or caught:
            return
        try:
            system.runtime.auth("agent:scanner").exchange(
                body[0][2], resource=datadog, scope="urn:infra:monitoring:read")
            caught.append("allowed")
        except InvalidRequest as exc:
            caught.append(exc)

    before_task_publish.connect(replay, weak=False)
    try:
        run = run_of(system)
    finally:
        before_task_publish.disconnect(replay)
    assert run.status == "succeeded"  # the run itself is unharmed
    assert len(caught) == 1 and isinstance(caught[0], InvalidRequest)
    assert caught[0].reason == "may_act_mismatch"


def fork(system: System, scopes: list[str]) -> tuple[str, dict[str, str]]:
    """A root for sam and InfraBot's branch tokens from it, as the fork point mints them."""
    ctx = Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                  commit=COMMIT, run_id="run-joinrules")
    root = system.orchestrator.auth.root_token(SAM, scopes, ctx, "agent:infrabot")["access_token"]
    infrabot = system.runtime.auth("agent:infrabot")
    branches = {b: infrabot.exchange(root, audience=b, scope=s)["access_token"] for b, s in (
        ("agent:argocd", "urn:infra:deploy:create"),
        ("agent:scanner", "urn:infra:repo:read"))}
    return root, branches


def test_a_join_never_holds_more_than_the_fork_point(system: System) -> None:
    root, branches = fork(system, ["urn:infra:deploy:create", "urn:infra:repo:read",
                                   "urn:infra:infrastructure:clean"])
    infrabot = system.runtime.auth("agent:infrabot")
    joined = tuple(branches.values())
    granted = infrabot.exchange(root, audience="agent:cleanup", joined=joined,
                                scope="urn:infra:infrastructure:clean")
    assert granted["scope"] == "urn:infra:infrastructure:clean"
    with pytest.raises(InvalidScope) as more:  # cleanup may hold it, the fork point did not
        infrabot.exchange(root, audience="agent:cleanup", joined=joined,
                          scope="urn:infra:incident:resolve")
    assert more.value.reason == "scope_not_grantable"
    # joined tokens are the subject's own branches, and only on a hand-off
    _, others = fork(system, ["urn:infra:deploy:create", "urn:infra:repo:read"])
    with pytest.raises(InvalidRequest) as stranger:
        infrabot.exchange(root, audience="agent:cleanup", joined=tuple(others.values()),
                          scope="urn:infra:infrastructure:clean")
    assert stranger.value.reason == "joined_not_a_branch"
    with pytest.raises(InvalidRequest) as service:
        infrabot.exchange(root, resource=system.runtime.service_url("aws"), joined=joined,
                          scope="urn:infra:infrastructure:clean")
    assert service.value.reason == "join_needs_hand_off"
    with pytest.raises(InvalidRequest) as garbage:
        infrabot.exchange(root, audience="agent:cleanup", joined=("not-a-token",),
                          scope="urn:infra:infrastructure:clean")
    assert garbage.value.reason == "malformed"
    # without its branches, InfraBot may not hand off to the join at all
    with pytest.raises(InvalidTarget) as skipped:
        infrabot.exchange(root, audience="agent:cleanup", scope="urn:infra:infrastructure:clean")
    assert skipped.value.reason == "handoff_not_allowed"


def test_revoking_a_branch_revokes_the_join(system: System) -> None:
    root, branches = fork(system, ["urn:infra:deploy:create", "urn:infra:repo:read",
                                   "urn:infra:infrastructure:clean"])
    infrabot = system.runtime.auth("agent:infrabot")
    join = infrabot.exchange(root, audience="agent:cleanup", joined=tuple(branches.values()),
                             scope="urn:infra:infrastructure:clean")["access_token"]
    scanner_jti = system.runtime.auth("agent:scanner").introspect(branches["agent:scanner"])["jti"]
    system.orchestrator.auth.revoke_by(jti=scanner_jti)
    with pytest.raises(InvalidRequest) as refused:
        system.runtime.auth("agent:cleanup").exchange(
            join, resource=system.runtime.service_url("aws"),
            scope="urn:infra:infrastructure:clean")
    assert refused.value.reason == "ancestor_revoked"
    # ... and a join minted after the revocation is refused at the fork point
    with pytest.raises(InvalidRequest) as late:
        infrabot.exchange(root, audience="agent:cleanup", joined=tuple(branches.values()),
                          scope="urn:infra:infrastructure:clean")
    assert late.value.reason == "token_revoked"


# --- an agent declared only in this test's directory file --------------------------------------

AUDITOR_WORKFLOW = {
    "name": "audit-check", "trigger": {"environments": ["prod"], "task": "audit"},
    "agents": [
        {"agent": "agent:infrabot", "steps": [
            {"id": "latency", "action": "datadog.metrics.query", "params": {
                "from": "${window_start}", "to": "${now}",
                "query": "avg:trace.http.request.duration{service:${service},env:${environment}}"}}],
         "hand_off": [{"to": ["agent:auditor", "agent:scanner"], "join": "agent:cleanup"}]},
        {"agent": "agent:auditor", "steps": [{"action": "github.pull.read", "params": {
            "owner": "${owner}", "repo": "${repo}", "pull_number": "${pr}"}}]},
        {"agent": "agent:scanner", "steps": [{"action": "aws.ec2.describe_instances",
                                              "params": {}}]},
        {"agent": "agent:cleanup", "steps": [{"action": "pagerduty.incident.resolve", "params": {
            "id": "P7X9K2Q", "resolution": "seen by ${steps.latency.series.0.metric}"}}]}]}


def with_auditor(folder: Path) -> Path:
    """The shipped folder plus agent:auditor, declared in the directory file alone."""
    shutil.copytree(REPO_WORKFLOWS, folder, ignore=shutil.ignore_patterns("scenarios"))
    directory = yaml.safe_load((folder / "directory.yaml").read_text())
    directory["agents"]["agent:auditor"] = {
        "description": "declared here, in no Python", "queue": "auditor-q",
        "allowed_scopes": ["urn:infra:repo:read"], "hands_off_to": ["agent:cleanup"]}
    directory["agents"]["agent:infrabot"]["hands_off_to"].append("agent:auditor")
    (folder / "directory.yaml").write_text(yaml.safe_dump(directory))
    (folder / "audit-check.yaml").write_text(yaml.safe_dump(AUDITOR_WORKFLOW, sort_keys=False))
    return folder


def test_an_agent_declared_only_in_the_directory_runs_as_a_branch(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "state",
                                 workflows_dir=with_auditor(tmp_path / "workflows"))
    with running_system(settings) as system:
        assert system.celery.conf.task_routes[task_name(system.celery, "agent:auditor")] == \
            {"queue": "auditor-q"}
        event = CIEvent(delivery_id="d-auditor", event_type="deployment", user=SAM,
                        sender_login="sam", repository="acme/service-x", service="service-x",
                        environment="prod", commit=COMMIT, trigger="ci_pipeline", pr=124,
                        task="audit")
        run = system.runtime.runs.wait(system.orchestrator.start(event), timeout=RUN_TIMEOUT)
    assert (run.status, run.reason, run.workflow) == ("succeeded", "ok", "audit-check")
    assert [c.action for c in events_of(run, "called", "agent:auditor")] == ["pr:read"]
    assert hand_offs(run, "agent:infrabot")["agent:auditor"]["may_act"] == \
        {"sub": "agent:auditor"}
    assert [c.action for c in events_of(run, "called", "agent:cleanup")] == \
        ["incident:resolve"]
