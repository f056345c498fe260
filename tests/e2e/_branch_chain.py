"""A workflow whose branch hands off on (docs/graphs.md): InfraBot forks to ArgoCD and the
scanner; the scanner hands off to agent:commenter, declared only in this test's directory file,
who comments on the PR with the scan's result; CleanupAgent joins once both branches ended."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO_WORKFLOWS = Path(__file__).parents[2] / "workflows"
COMMENTER, SCANNER, ARGOCD = "agent:commenter", "agent:scanner", "agent:argocd"
INFRABOT, CLEANUP = "agent:infrabot", "agent:cleanup"
PR_PARAMS = {"owner": "${owner}", "repo": "${repo}"}

SCAN_NOTIFY = {
    "name": "scan-notify", "trigger": {"environments": ["prod"], "task": "deploy"},
    "agents": [
        {"agent": INFRABOT, "steps": [{"id": "latency", "action": "datadog.metrics.query",
                                       "params": {
            "from": "${window_start}", "to": "${now}",
            "query": "avg:trace.http.request.duration{service:${service},env:${environment}}"}}],
         "hand_off": [{"to": [ARGOCD, SCANNER], "join": CLEANUP}]},
        {"agent": ARGOCD, "steps": [{"action": "aws.ec2.describe_instances", "params": {}}]},
        {"agent": SCANNER, "steps": [{"id": "scan", "action": "github.pull.read",
                                      "params": {**PR_PARAMS, "pull_number": "${pr}"}}],
         "hand_off": COMMENTER},
        {"agent": COMMENTER, "steps": [{"id": "told", "action": "github.comment.create",
                                       "params": {**PR_PARAMS, "issue_number": "${pr}",
                                                  "body": "scanned: ${steps.scan.state}"}}]},
        {"agent": CLEANUP, "steps": [{"action": "pagerduty.incident.resolve", "params": {
            "id": "P7X9K2Q", "resolution": "scan told: ${steps.told.body}"}}]}]}


def with_commenter(folder: Path) -> Path:
    """The shipped folder with scan-notify in place of post-deploy (it answers the same
    deployments) and agent:commenter, declared in the directory file alone."""
    shutil.copytree(REPO_WORKFLOWS, folder, ignore=shutil.ignore_patterns("scenarios"))
    (folder / "post-deploy.yaml").unlink()
    directory = yaml.safe_load((folder / "directory.yaml").read_text())
    agents: dict[str, Any] = directory["agents"]
    agents[COMMENTER] = {"description": "declared here, in no Python", "queue": "commenter",
                        "allowed_scopes": ["urn:infra:deploy:comment"],
                        "hands_off_to": [CLEANUP]}
    agents[SCANNER]["hands_off_to"].append(COMMENTER)
    agents[SCANNER]["allowed_scopes"].append("urn:infra:deploy:comment")
    (folder / "directory.yaml").write_text(yaml.safe_dump(directory))
    (folder / "scan-notify.yaml").write_text(yaml.safe_dump(SCAN_NOTIFY, sort_keys=False))
    return folder
