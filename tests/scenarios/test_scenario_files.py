"""Scenario files without running anything: the shipped ones load, selection by name or path,
and the private workflows copy a scenario's changes produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrabot.scenarios import load_scenario, load_scenarios, scenario_files, select_scenarios
from infrabot.scenarios._sandbox import sandbox_for
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import Workflow, load_directory, load_workflows, select

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
SCENARIOS = WORKFLOWS / "scenarios"


@pytest.fixture(scope="module")
def shipped_workflows(directory: Directory) -> dict[str, Workflow]:
    return load_workflows(WORKFLOWS, directory)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_every_shipped_scenario_loads(directory: Directory,
                                      shipped_workflows: dict[str, Workflow]) -> None:
    loaded = load_scenarios(scenario_files(SCENARIOS), directory, shipped_workflows)
    assert len(loaded) == len(list(SCENARIOS.glob("*.yaml")))
    assert all(item.scenario.description for item in loaded)


def test_scenarios_are_not_loaded_as_workflows(shipped_workflows: dict[str, Workflow]) -> None:
    assert sorted(shipped_workflows) == ["announce", "manual-check", "post-deploy", "rollback",
                                        "scan-report"]


def test_select_by_stem_name_or_path(tmp_path: Path) -> None:
    named = write(tmp_path, "file-stem.yaml", "name: other-name\n")
    assert select_scenarios(["file-stem"], tmp_path) == [named]
    assert select_scenarios(["other-name"], tmp_path) == [named]
    assert select_scenarios([str(named)], Path("/nonexistent")) == [named]
    assert select_scenarios([], tmp_path) == [named]
    with pytest.raises(ConfigError, match="no scenario named 'missing'"):
        select_scenarios(["missing"], tmp_path)
    with pytest.raises(ConfigError, match="no such scenario file"):
        select_scenarios([str(tmp_path / "gone.yaml")], tmp_path)
    with pytest.raises(ConfigError, match="no scenario files"):
        select_scenarios([], tmp_path / "empty")


def test_two_scenarios_with_one_name_are_refused(tmp_path: Path, directory: Directory,
                                                 shipped_workflows: dict[str, Workflow]) -> None:
    text = "name: twin\nevent: {user: sam, environment: prod}\nexpect: {status: succeeded}\n"
    paths = [write(tmp_path, "a.yaml", text), write(tmp_path, "b.yaml", text)]
    with pytest.raises(ConfigError, match=r"b\.yaml:1: scenario name 'twin' is also used by"):
        load_scenarios(paths, directory, shipped_workflows)


def test_private_copy_applies_every_change(tmp_path: Path, directory: Directory,
                                           shipped_workflows: dict[str, Workflow]) -> None:
    path = write(tmp_path, "s.yaml", """\
name: changed
event: {user: casey, environment: prod}
changes:
  max_depth: 3
  users: {user:casey: {permissions: [urn:infra:monitoring:read]}, user:sam: {disabled: true}}
  agents: {agent:cleanup: {allowed_scopes: [urn:infra:infrastructure:clean]}}
  context_rules: []
  hand_off_scopes: {agent:argocd: [urn:infra:incident:resolve]}
expect: {status: denied}
""")
    scenario = load_scenario(path, directory, shipped_workflows).scenario
    sandbox = sandbox_for(scenario, shipped_workflows)
    assert sandbox.routed_to is None
    copy = sandbox.write(scenario, WORKFLOWS, directory, shipped_workflows, tmp_path / "wf")
    changed = load_directory(copy / "directory.yaml")
    assert changed.users["user:casey"].permissions == ("urn:infra:monitoring:read",)
    assert changed.users["user:sam"].disabled is True
    assert changed.users["user:sam"].permissions == directory.users["user:sam"].permissions
    assert changed.agents["agent:cleanup"].allowed_scopes == ("urn:infra:infrastructure:clean",)
    assert changed.agents["agent:cleanup"].queue == "cleanup"
    assert changed.context_rules == ()
    workflows = load_workflows(copy, changed)
    assert sorted(workflows) == sorted(shipped_workflows)
    for wf in workflows.values():
        plan = next((p for p in wf.agents if p.agent == "agent:argocd"), None)
        if plan is not None and plan.hand_off:
            assert plan.hand_off_scopes == ("urn:infra:incident:resolve",)
    # unchanged files are copied verbatim
    assert (copy / "manual-check.yaml").read_text() == \
        (WORKFLOWS / "manual-check.yaml").read_text()


def test_routing_to_a_workflow_the_event_would_not_start(
        tmp_path: Path, directory: Directory, shipped_workflows: dict[str, Workflow]) -> None:
    path = write(tmp_path, "s.yaml", "name: r\nevent: {user: sam, environment: prod}\n"
                                     "workflow: rollback\nexpect: {status: succeeded}\n")
    scenario = load_scenario(path, directory, shipped_workflows).scenario
    sandbox = sandbox_for(scenario, shipped_workflows)
    assert sandbox.routed_to == "rollback"
    copy = sandbox.write(scenario, WORKFLOWS, directory, shipped_workflows, tmp_path / "wf")
    workflows = load_workflows(copy, load_directory(copy / "directory.yaml"))
    assert list(workflows) == ["rollback"]
    assert select(workflows, event_type="deployment", environment="prod",
                  trigger="ci_pipeline").name == "rollback"
    assert workflows["rollback"].agents == shipped_workflows["rollback"].agents


def test_naming_the_workflow_the_event_starts_anyway_shares_the_system(
        tmp_path: Path, directory: Directory, shipped_workflows: dict[str, Workflow]) -> None:
    named = write(tmp_path, "a.yaml", "name: a\nevent: {user: sam, environment: prod}\n"
                                      "workflow: post-deploy\nexpect: {status: succeeded}\n")
    plain = write(tmp_path, "b.yaml", "name: b\nevent: {user: sam, environment: prod}\n"
                                      "changes: {revoke: {after: agent:argocd}}\n"
                                      "expect: {status: denied}\n")
    keys = {sandbox_for(load_scenario(p, directory, shipped_workflows).scenario,
                        shipped_workflows).key for p in (named, plain)}
    assert len(keys) == 1


def test_a_creator_is_a_deployment_s_only(tmp_path: Path, directory: Directory,
                                          shipped_workflows: dict[str, Workflow]) -> None:
    path = write(tmp_path, "creator.yaml", "name: creator\nevent:\n  type: workflow_run\n"
                 "  user: sam\n  environment: prod\n  creator: sam\nexpect: {status: denied}\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, directory, shipped_workflows)
    assert "creator is a deployment's; a workflow_run has none" in str(caught.value)
    assert str(caught.value).startswith(f"{path}:")
