"""A scenario's ``changes.values``: the private copy's workflow names what the scenario says in
that environment (and keeps every other value); a workflow or value it does not have is refused
with the scenario file's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrabot.scenarios import load_scenario
from infrabot.scenarios._sandbox import sandbox_for
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import Workflow, load_directory, load_workflows

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
HEAD = "name: v\nevent: {user: sam, environment: staging}\nexpect: {status: denied}\nchanges:\n"


@pytest.fixture(scope="module")
def shipped(directory: Directory) -> dict[str, Workflow]:
    return load_workflows(WORKFLOWS, directory)


def scenario_file(tmp_path: Path, values: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + f"  values: {values}\n")
    return path


def test_the_private_copy_takes_the_changed_values(tmp_path: Path, directory: Directory,
                                                    shipped: dict[str, Workflow]) -> None:
    path = scenario_file(tmp_path, "{post-deploy: {staging: {deployment_id: 9001}}}")
    scenario = load_scenario(path, directory, shipped).scenario
    copy = sandbox_for(scenario, shipped).write(scenario, WORKFLOWS, directory, shipped,
                                                tmp_path / "wf")
    workflows = load_workflows(copy, load_directory(copy / "directory.yaml"))
    changed = workflows["post-deploy"].values
    assert changed["staging"] == {**shipped["post-deploy"].values["staging"],
                                  "deployment_id": 9001}
    assert changed["prod"] == shipped["post-deploy"].values["prod"]
    assert workflows["rollback"] == shipped["rollback"]
    assert (copy / "rollback.yaml").read_text() == (WORKFLOWS / "rollback.yaml").read_text()


@pytest.mark.parametrize(("values", "message"), [
    ("{post-deplo: {staging: {deployment_id: 9001}}}",
     "s.yaml:5: changes.values.post-deplo: no workflow named 'post-deplo'"),
    ("{post-deploy: {staging: {deployment: 9001}}}",
     ("s.yaml:5: changes.values.post-deploy.staging.deployment: post-deploy has no value "
     "'deployment' for environment staging")),
    ("{manual-check: {staging: {deployment_id: 9001}}}",
     ("s.yaml:5: changes.values.manual-check.staging.deployment_id: manual-check has no value "
     "'deployment_id' for environment staging")),
])
def test_a_value_the_workflow_does_not_have_is_refused(
        tmp_path: Path, directory: Directory, shipped: dict[str, Workflow], values: str,
        message: str) -> None:
    path = scenario_file(tmp_path, values)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path, directory, shipped)
    assert str(caught.value) == f"{tmp_path}/{message}"
