"""Per-environment workflow values: what a step's params render to in each environment, and the
one-line, file:line errors a workflow file with a wrong ``values:`` gets when it is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import Workflow, load_workflow, load_workflows
from orchestrator.workflows._model import render_value

REPO = Path(__file__).resolve().parents[2]
BUILT_IN = {"service": "service-x", "environment": "staging", "repository": "acme/service-x",
            "owner": "acme", "repo": "service-x", "commit": "9f2c1e7", "pr": "124",
            "run_id": "run-1", "user": "sam", "now": "1700000900", "window_start": "1700000000"}
HEAD = """\
name: values-test
trigger:
  environments: [prod, staging]
"""
STEPS = """\
agents:
  - agent: agent:argocd
    steps:
      - action: aws.ec2.create_tags
        params:
          Resources: "${instances}"
          Tags: [{Key: deployed-commit, Value: "${commit}"}]
"""
VALUES = """\
values:
  prod: {instances: [i-0a1b2c3d4e5f60001]}
  staging: {instances: [i-0b1c2d3e4f5a60001]}
"""


@pytest.fixture(scope="module")
def shipped(directory: Directory) -> dict[str, Workflow]:
    return load_workflows(REPO / "workflows", directory)


def params(workflow: Workflow, environment: str) -> list[dict[str, object]]:
    values = {**workflow.values_for(environment), **BUILT_IN, "environment": environment}
    return [step.rendered_params(values) for plan in workflow.agents for step in plan.steps]


def named(rendered: list[dict[str, object]], key: str) -> list[object]:
    return [p[key] for p in rendered if key in p]


def test_post_deploy_names_prod_s_resources_in_prod_and_the_twins_in_staging(
        shipped: dict[str, Workflow]) -> None:
    prod, staging = params(shipped["post-deploy"], "prod"), params(shipped["post-deploy"],
                                                                    "staging")
    # the rollback branch, then ArgoCD's (a number stays a number, a list a list)
    assert named(prod, "deployment_id") == [9001, 9001]
    assert named(prod, "Resources") == [["i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"]] * 2 + \
        [["i-0a1b2c3d4e5f60003"]]
    assert named(prod, "id") == ["P7X9K2Q"]
    assert named(staging, "deployment_id") == [9002, 9002]
    assert named(staging, "Resources") == [["i-0b1c2d3e4f5a60001"]] * 3
    assert named(staging, "id") == ["PSTG4X1"]


def test_rollback_names_each_environment_s_own_resources(shipped: dict[str, Workflow]) -> None:
    prod, staging = params(shipped["rollback"], "prod"), params(shipped["rollback"], "staging")
    assert named(prod, "deployment_id") == [9001]
    assert named(prod, "Resources") == [["i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"]] * 2
    assert named(prod, "id") == ["P7X9K2Q", "P7X9K2Q"]
    assert named(staging, "deployment_id") == [9002]
    assert named(staging, "Resources") == [["i-0b1c2d3e4f5a60001"]] * 2
    assert named(staging, "id") == ["PSTG4X1", "PSTG4X1"]


def test_a_whole_placeholder_keeps_its_type_and_an_embedded_one_is_text() -> None:
    values = {"n": 9002, "ids": ["a", "b"], "flag": True, "name": "x"}
    assert render_value("${n}", values) == 9002
    assert render_value("${ids}", values) == ["a", "b"]
    assert render_value("${flag}", values) is True
    assert render_value({"k": ["${n}", "id ${n} of ${name}"]}, values) == \
        {"k": [9002, "id 9002 of x"]}


def load(tmp_path: Path, directory: Directory, text: str) -> Workflow:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return load_workflow(path, directory)


def refused(tmp_path: Path, directory: Directory, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, directory, text)
    return str(caught.value).replace(str(tmp_path / "wf.yaml"), "wf.yaml")


def test_a_complete_values_mapping_loads(tmp_path: Path, directory: Directory) -> None:
    workflow = load(tmp_path, directory, HEAD + VALUES + STEPS)
    assert workflow.values_for("staging") == {"instances": ["i-0b1c2d3e4f5a60001"]}
    assert workflow.values_for("canary") == {}


def test_an_environment_without_a_value_is_refused(tmp_path: Path, directory: Directory) -> None:
    values = "values:\n  prod: {instances: [i-0a1b2c3d4e5f60001]}\n"
    assert refused(tmp_path, directory, HEAD + values + STEPS) == (
        "wf.yaml:11: agents.0.steps.0.params.Resources: ${instances} has no value for "
        "environment staging (values.staging.instances)")


def test_an_unknown_name_is_refused(tmp_path: Path, directory: Directory) -> None:
    steps = STEPS.replace("${instances}", "${instance}")
    assert refused(tmp_path, directory, HEAD + VALUES + steps) == (
        "wf.yaml:12: agents.0.steps.0.params.Resources: unknown field ${instance}: neither a "
        "built-in field (service, environment, repository, owner, repo, commit, pr, run_id, "
        "user, now, window_start) nor in values")


def test_an_unknown_name_without_any_values_is_refused(tmp_path: Path,
                                                       directory: Directory) -> None:
    assert refused(tmp_path, directory, HEAD + STEPS).startswith(
        "wf.yaml:9: agents.0.steps.0.params.Resources: unknown field ${instances}: ")


def test_a_value_no_step_uses_is_refused(tmp_path: Path, directory: Directory) -> None:
    values = VALUES.replace("prod: {", "prod: {incident: P7X9K2Q, ")
    assert refused(tmp_path, directory, HEAD + values + STEPS) == \
        "wf.yaml:5: values.prod.incident: incident is used by no step"


def test_a_value_cannot_replace_a_built_in_field(tmp_path: Path, directory: Directory) -> None:
    values = VALUES.replace("staging: {", "staging: {environment: prod, ")
    assert refused(tmp_path, directory, HEAD + values + STEPS) == \
        "wf.yaml:6: values.staging.environment: environment is a built-in field; a workflow " \
        "value cannot replace it"


def test_a_list_inside_a_longer_string_is_refused(tmp_path: Path, directory: Directory) -> None:
    steps = STEPS.replace('Value: "${commit}"', 'Value: "on ${instances}"')
    assert refused(tmp_path, directory, HEAD + VALUES + steps) == (
        "wf.yaml:13: agents.0.steps.0.params.Tags: ${instances} is a list in values.prod: it "
        "cannot be part of a longer string")


@pytest.mark.parametrize(("value", "where"), [
    ("{instances: {a: 1}}", "values.prod.instances"),
    ("{instances: [[nested]]}", "values.prod.instances"),
    ("{Bad-Name: x}", "values.prod.Bad-Name"),
])
def test_a_value_of_the_wrong_shape_is_refused(tmp_path: Path, directory: Directory,
                                               value: str, where: str) -> None:
    values = f"values:\n  prod: {value}\n"
    message = refused(tmp_path, directory, HEAD + values + STEPS)
    assert message.startswith(f"wf.yaml:5: {where}"), message


def test_a_malformed_placeholder_is_refused(tmp_path: Path, directory: Directory) -> None:
    steps = STEPS.replace('"${instances}"', '"${instances"')
    assert refused(tmp_path, directory, HEAD + VALUES + steps).startswith(
        "wf.yaml:10: agents.0.steps.0: Value error, params.Resources: malformed ${...} "
        "placeholder in '${instances'")
