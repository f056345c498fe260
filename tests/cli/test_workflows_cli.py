"""``infrabot workflows list|check``: the workflows, and before running anything which steps a
user's run would be allowed and why not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# pytest's prepend import mode puts tests/ on sys.path, where tests/mock_services (no __init__)
# would shadow the real `mock_services` (installed editable, found after sys.path).
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from click.testing import CliRunner, Result

from infrabot.cli._workflows import workflows

DEPLOY_SCOPES = ["urn:infra:deploy:create", "urn:infra:infrastructure:tag",
                 "urn:infra:infrastructure:clean", "urn:infra:incident:resolve"]


def run(*args: str, **env: str) -> Result:
    return CliRunner(env=env or None).invoke(workflows, list(args))


def verdicts(result: Result) -> list[tuple[str, str, str]]:
    data: dict[str, Any] = json.loads(result.stdout)
    return [(s["agent"], s["step"], s["verdict"]) for s in data["steps"]]


def test_list_shows_each_workflow_with_trigger_agents_steps_and_scopes() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for text in ("post-deploy", "manual-check", "rollback", "agent:infrabot", "→ agent:argocd",
                 "→ agent:cleanup", "agent:scanner ⇒ join agent:cleanup", "(when", "deployment | workflow_run", "task rollback",
                 "urn:infra:incident:resolve", "by manual"):
        assert text in result.stdout, text


def test_list_json() -> None:
    from orchestrator.workflows import load_directory, load_workflows, required_scopes

    result = run("list", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    shipped = load_workflows(_REPO / "workflows", load_directory(_REPO / "workflows" /
                                                                   "directory.yaml"))
    assert sorted(rows) == sorted(shipped)
    post = rows["post-deploy"]
    assert post["agents"] == ["agent:infrabot", "agent:rollback", "agent:argocd",
                              "agent:scanner", "agent:cleanup"]
    assert post["graph"] == [
        "agent:infrabot → agent:rollback (when max(steps.latency.series.0.pointlist.*.1) > 500)",
        "agent:infrabot → agent:argocd ∥ agent:scanner ⇒ join agent:cleanup"]
    assert post["steps"] == 11
    assert post["trigger"] == {"events": ["deployment", "workflow_run"],
                               "environments": ["prod", "staging"],
                               "triggers": ["ci_pipeline"], "task": "deploy"}
    assert post["required_scopes"] == required_scopes(shipped["post-deploy"])
    assert rows["manual-check"]["trigger"]["triggers"] == ["manual"]


def test_check_sam_everything_allowed_exit_0() -> None:
    result = run("check", "post-deploy", "--user", "sam")
    assert result.exit_code == 0, result.output
    assert "all 15 exchanges would be allowed" in result.stdout
    as_json = run("check", "post-deploy", "--user", "user:sam", "--json")
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["all_allowed"] is True and data["user_lacks"] == []
    assert "urn:infra:secrets:manage" not in data["root_granted"]
    assert (data["depth"], data["max_depth"]) == (2, 4)  # a join continues from the fork
    assert {v for _, _, v in verdicts(as_json)} == {"allow"}


def test_check_a_branch_that_hands_off_further() -> None:
    """scan-report: the scanner's branch goes on to the notifier; preflight exchanges the
    notifier's hand-off from the scanner's token, the join after every agent of the branches."""
    listed = {row["name"]: row for row in json.loads(run("list", "--json").stdout)}
    assert listed["scan-report"]["graph"] == [
        "agent:infrabot → agent:argocd ∥ agent:scanner ⇒ join agent:cleanup",
        "agent:scanner → agent:notifier"]
    as_json = run("check", "scan-report", "--user", "sam", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["depth"] == 3  # infrabot, scanner, notifier
    assert [(a, s) for a, s, _ in verdicts(as_json)][-5:] == [
        ("agent:scanner", "aws.ec2.describe_instances"), ("agent:scanner", "hand_off"),
        ("agent:notifier", "chat.postMessage"), ("agent:cleanup", "aws.ec2.delete_tags"),
        ("agent:cleanup", "pagerduty.incident.resolve")]
    handed = next(s for s in data["steps"] if s["hand_off_to"] == "agent:notifier")
    assert (handed["agent"], handed["scopes"], handed["verdict"]) == \
        ("agent:scanner", ["urn:infra:chat:write"], "allow")
    # alex holds no chat:write: the scanner's branch is handed none, its hand-off on is refused
    alex = json.loads(run("check", "scan-report", "--user", "alex", "--json").stdout)
    handed = next(s for s in alex["steps"] if s["hand_off_to"] == "agent:notifier")
    assert (handed["verdict"], handed["error"]) == ("refuse", "invalid_scope")
    post = next(s for s in alex["steps"] if s["step"] == "chat.postMessage")
    assert post["verdict"] == "refuse"


def test_check_alex_names_refused_steps_and_missing_scopes_exit_1() -> None:
    result = run("check", "post-deploy", "--user", "alex")
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "9 of 15 exchanges would be refused or not reached" in out
    for scope in DEPLOY_SCOPES:
        assert f"user:alex lacks {scope}" in out
    data = json.loads(run("check", "post-deploy", "--user", "alex", "--json").stdout)
    assert data["user_lacks"] == DEPLOY_SCOPES
    steps = {(s["agent"], s["step"], s["hand_off_to"]): s for s in data["steps"]}
    for target, scopes in (("agent:argocd", DEPLOY_SCOPES[:2]),
                           ("agent:cleanup", DEPLOY_SCOPES[2:])):
        hand_off = steps[("agent:infrabot", "hand_off", target)]
        assert (hand_off["verdict"], hand_off["error"], hand_off["reason"]) == \
            ("refuse", "invalid_scope", "scope_not_grantable")
        assert set(hand_off["scopes"]) == set(scopes)
    steps = {(s["agent"], s["step"]): s for s in data["steps"]}
    deploy = steps[("agent:argocd", "github.deployment_status.create")]
    assert deploy["verdict"] == "refuse"
    assert "user:alex lacks urn:infra:deploy:create" in deploy["causes"]
    assert [s["verdict"] for s in data["steps"][:3]] == ["allow"] * 3


def test_check_manual_prod_comment_refused_by_context_exit_1() -> None:
    result = run("check", "manual-check", "--user", "sam", "--env", "prod",
                 "--trigger", "manual", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["context_forbids"] == ["urn:infra:deploy:comment"]
    comment = next(s for s in data["steps"] if s["step"] == "github.comment.create")
    assert (comment["verdict"], comment["reason"]) == ("refuse", "scope_not_grantable")
    assert "urn:infra:deploy:comment is not permitted in prod when triggered by manual" in \
        comment["causes"]
    assert verdicts(result) == [
        ("agent:infrabot", "datadog.metrics.query", "allow"),
        ("agent:infrabot", "github.comment.create", "refuse"),
        ("agent:infrabot", "hand_off", "not_reached"),
        ("agent:argocd", "aws.ec2.describe_instances", "not_reached"),
    ]
    human = run("check", "manual-check", "--user", "sam", "--trigger", "manual")
    assert "context forbids  urn:infra:deploy:comment" in human.stdout


def test_check_manual_staging_allowed_exit_0() -> None:
    result = run("check", "manual-check", "--user", "sam", "--env", "staging",
                 "--trigger", "manual")
    assert result.exit_code == 0, result.output


def test_check_depth_limit_from_settings() -> None:
    result = run("check", "post-deploy", "--user", "sam", "--json", INFRABOT_MAX_DEPTH="1")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["depth"], data["max_depth"]) == (2, 1)
    after = [s for s in data["steps"] if s["agent"] != "agent:infrabot"]
    assert {(s["verdict"], s["reason"]) for s in after} == {("refuse", "max_depth_exceeded")}
    assert {s["verdict"] for s in data["steps"] if s["agent"] == "agent:infrabot"} == {"allow"}


def test_check_disabled_user_root_refused() -> None:
    result = run("check", "post-deploy", "--user", "former-employee", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["root_error"], data["root_reason"]) == ("invalid_grant", "unknown_user")
    assert {s["verdict"] for s in data["steps"]} == {"refuse"}


def test_unknown_user_or_workflow_is_one_line_exit_2() -> None:
    for args, message in (
            (("post-deploy", "--user", "bob"), "Error: user:bob is not a user in the directory"),
            (("no-such", "--user", "sam"), "Error: no workflow named 'no-such' (known: "),
            (("post-deploy", "--user", "sam", "--env", "pr od"),
             "Error: --env 'pr od': String should match pattern")):
        result = run("check", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(message), line
        assert "Traceback" not in result.output


def test_help_has_examples() -> None:
    for command in ("list", "check"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example:" in result.stdout and f"infrabot workflows {command}" in result.stdout


def test_as_a_user_runs_it(tmp_path: Path) -> None:
    """A process of its own: ``workflows check`` for alex exits 1 with the refusals named."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "from infrabot.cli._workflows import workflows; workflows()",
         "check", "post-deploy", "--user", "alex"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "user:alex lacks urn:infra:deploy:create" in done.stdout
    assert done.stderr == ""
