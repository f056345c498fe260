"""Workflows as graphs, checked before anything runs: every problem is one ConfigError naming the
file, the line and what is wrong; and the ``when:`` grammar, which never evaluates Python."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import (
    Branch,
    ConditionError,
    Workflow,
    branch_agents,
    branch_ends,
    branch_of,
    downstream_scopes,
    earlier_steps,
    graph_order,
    load_directory,
    load_workflow,
    longest_way,
    parse_condition,
    required_scopes,
)

SHIPPED = Path(__file__).parents[2] / "workflows"
QUERY = {"action": "datadog.metrics.query",
         "params": {"from": 1, "to": 2, "query": "avg:latency{service:x,env:prod}"}}
READ_PR = {"action": "github.pull.read", "params": {"owner": "a", "repo": "b", "pull_number": 1}}
DESCRIBE = {"action": "aws.ec2.describe_instances", "params": {}}
LATENCY = "max(steps.latency.series.0.pointlist.*.1)"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(SHIPPED / "directory.yaml")


def fan_out(**edge: Any) -> dict[str, Any]:
    """post-deploy's shape, small: InfraBot forks to ArgoCD and the scanner; cleanup joins."""
    return copy.deepcopy({"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:infrabot", "steps": [{**QUERY, "id": "latency"}],
         "hand_off": [{"when": f"{LATENCY} > 500", "to": "agent:rollback"},
                      {"to": ["agent:argocd", "agent:scanner"], "join": "agent:cleanup",
                       **edge}]},
        {"agent": "agent:rollback", "steps": [DESCRIBE]},
        {"agent": "agent:argocd", "steps": [DESCRIBE]},
        {"agent": "agent:scanner", "steps": [READ_PR]},
        {"agent": "agent:cleanup", "steps": [DESCRIBE]}]})


def load(tmp_path: Path, data: dict[str, Any], directory: Directory) -> Workflow:
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_workflow(path, directory)


def refused(tmp_path: Path, data: dict[str, Any], directory: Directory, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load(tmp_path, data, directory)
    assert re.match(rf"{re.escape(str(tmp_path / 'graph.yaml'))}:\d+: ", raised.value.message)


def test_the_shipped_post_deploy_forks_joins_and_decides(directory: Directory) -> None:
    workflow = load_workflow(SHIPPED / "post-deploy.yaml", directory)
    edges = workflow.plan("agent:infrabot").edges
    assert [(e.to, e.join, e.when) for e in edges] == [
        (("agent:rollback",), None, f"{LATENCY} > 500"),
        (("agent:argocd", "agent:scanner"), "agent:cleanup", None)]
    # each branch is handed what it needs; the join what it and after need
    assert downstream_scopes(workflow, "agent:infrabot", "agent:scanner") == [
        "urn:infra:repo:read", "urn:infra:infrastructure:read"]
    assert downstream_scopes(workflow, "agent:infrabot", "agent:cleanup") == [
        "urn:infra:infrastructure:clean", "urn:infra:incident:resolve"]
    assert "urn:infra:infrastructure:read" in required_scopes(workflow)
    assert earlier_steps(workflow, "agent:cleanup") == {"latency"}


def test_a_small_fan_out_loads(tmp_path: Path, directory: Directory) -> None:
    assert load(tmp_path, fan_out(), directory).root_agent == "agent:infrabot"


def test_a_fan_out_needs_a_join(tmp_path: Path, directory: Directory) -> None:
    data = fan_out()
    del data["agents"][0]["hand_off"][1]["join"]
    data["agents"].pop()
    refused(tmp_path, data, directory, "agents.0.hand_off.1: a fan-out needs join: <agent>")


# --- a branch that hands off on: a sub-chain ---------------------------------------------------

POST = {"action": "github.comment.create",
        "params": {"owner": "a", "repo": "b", "issue_number": 1, "body": "scanned"}}


@pytest.fixture(scope="module")
def with_commenter(directory: Directory) -> Directory:
    """The shipped directory plus agent:commenter, to whom the scanner may hand off."""
    data = directory.model_dump()
    data["agents"]["agent:commenter"] = {"allowed_scopes": ["urn:infra:deploy:comment"],
                                        "hands_off_to": ["agent:cleanup"]}
    scanner = data["agents"]["agent:scanner"]
    scanner["hands_off_to"] = [*scanner["hands_off_to"], "agent:commenter"]
    scanner["allowed_scopes"] = [*scanner["allowed_scopes"], "urn:infra:deploy:comment"]
    return Directory.model_validate(data)


def sub_chain() -> dict[str, Any]:
    """``fan_out()`` whose scanner hands off on to the commenter, who ends that branch."""
    data = fan_out()
    data["agents"][3]["hand_off"] = "agent:commenter"
    data["agents"][3]["steps"][0]["id"] = "scan"
    data["agents"].insert(4, {"agent": "agent:commenter", "steps": [{**POST, "id": "told"}]})
    return data


def test_a_branch_hands_off_on_as_a_sub_chain(tmp_path: Path, with_commenter: Directory) -> None:
    workflow = load(tmp_path, sub_chain(), with_commenter)
    fan = workflow.plan("agent:infrabot").edges[1]
    assert branch_of(workflow, "agent:commenter") == Branch("agent:infrabot", fan, "agent:scanner")
    assert branch_of(workflow, "agent:scanner") == Branch("agent:infrabot", fan, "agent:scanner")
    assert branch_of(workflow, "agent:cleanup") is None
    assert branch_of(workflow, "agent:infrabot") is None
    assert branch_agents(workflow, "agent:scanner") == ["agent:scanner", "agent:commenter"]
    assert branch_ends(workflow, "agent:scanner") == ["agent:commenter"]
    assert branch_ends(workflow, "agent:argocd") == ["agent:argocd"]
    # the join comes after every agent of the branches; it counts one actor after the fork
    assert graph_order(workflow) == ["agent:infrabot", "agent:rollback", "agent:argocd",
                                     "agent:scanner", "agent:commenter", "agent:cleanup"]
    assert longest_way(workflow) == 3
    # the scanner is handed what its sub-chain needs, the commenter only its own
    assert downstream_scopes(workflow, "agent:infrabot", "agent:scanner") == [
        "urn:infra:repo:read", "urn:infra:deploy:comment"]
    assert downstream_scopes(workflow, "agent:scanner", "agent:commenter") == [
        "urn:infra:deploy:comment"]
    # the join may read every step of every branch's sub-chain
    assert earlier_steps(workflow, "agent:cleanup") == {"latency", "scan", "told"}
    assert earlier_steps(workflow, "agent:commenter") == {"latency", "scan"}


def test_a_branch_end_chosen_by_a_condition_must_be_allowed_to_hand_off_to_the_join(
        tmp_path: Path, with_commenter: Directory) -> None:
    """The scanner hands off only when its scan says so: it may end its branch itself, so it
    and the commenter must both be allowed to hand off to the join."""
    data = sub_chain()
    data["agents"][3]["hand_off"] = [{"when": "steps.scan.state == 'open'",
                                      "to": "agent:commenter"}]
    workflow = load(tmp_path, data, with_commenter)
    assert branch_ends(workflow, "agent:scanner") == ["agent:scanner", "agent:commenter"]
    lacking = with_commenter.model_dump()
    lacking["agents"]["agent:commenter"]["hands_off_to"] = []
    refused(tmp_path, data, Directory.model_validate(lacking),
            "agents.0.hand_off.1.join: the directory does not let agent:commenter hand off to "
            "agent:cleanup (hands_off_to): agent:commenter may end agent:scanner's branch, and "
            "the join waits for it")


def test_a_branch_hands_off_within_the_directory(tmp_path: Path, directory: Directory) -> None:
    lacking = directory.model_dump()
    lacking["agents"]["agent:commenter"] = {"allowed_scopes": ["urn:infra:deploy:comment"],
                                           "hands_off_to": ["agent:cleanup"]}
    refused(tmp_path, sub_chain(), Directory.model_validate(lacking),
            "agents.3.hand_off.0: the directory does not let agent:scanner hand off to "
            "agent:commenter (hands_off_to)")
    lacking["agents"]["agent:commenter"]["hands_off_to"] = []
    lacking["agents"]["agent:scanner"]["hands_off_to"] = ["agent:cleanup", "agent:commenter"]
    refused(tmp_path, sub_chain(), Directory.model_validate(lacking),
            "agents.0.hand_off.1.join: the directory does not let agent:commenter hand off to "
            "agent:cleanup (hands_off_to): agent:commenter may end agent:scanner's branch, and "
            "the join waits for it")


@pytest.mark.parametrize(("target", "message"), [
    ("agent:cleanup", ("agents.4.hand_off.0: agent:commenter is in agent:scanner's branch of "
                      "agent:infrabot's fan-out: it cannot hand off to the join agent:cleanup, "
                      "which starts once every branch has ended")),
    ("agent:argocd", ("agents.4.hand_off.0: agent:commenter is in agent:scanner's branch of "
                     "agent:infrabot's fan-out: it cannot hand off to agent:argocd, an agent "
                     "of another branch")),
    ("agent:infrabot", ("agents.4.hand_off.0: agent:commenter is in agent:scanner's branch of "
                       "agent:infrabot's fan-out: it cannot hand off to agent:infrabot, which "
                       "runs before the fork (a cycle)")),
    ("agent:scanner", ("agents.3.agent: agent:scanner is reached from several ways "
                      "(agent:commenter, agent:infrabot); an agent has one way in (a join "
                      "waits for a fan-out)")),
])
def test_a_branch_never_reaches_the_join_a_sibling_or_the_fork(
        tmp_path: Path, with_commenter: Directory, target: str, message: str) -> None:
    data = sub_chain()
    data["agents"][4]["hand_off"] = target
    refused(tmp_path, data, with_commenter, message)


def test_a_branch_never_reaches_back_before_a_later_fork(tmp_path: Path) -> None:
    agents = {f"agent:{n}": {"allowed_scopes": [], "hands_off_to": to} for n, to in (
        ("a", ["agent:b"]), ("b", ["agent:c", "agent:d"]), ("c", ["agent:e"]),
        ("d", ["agent:e", "agent:a"]), ("e", []))}
    data = {"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:a", "steps": [QUERY], "hand_off": "agent:b"},
        {"agent": "agent:b", "hand_off": [{"to": ["agent:c", "agent:d"], "join": "agent:e"}]},
        {"agent": "agent:c"}, {"agent": "agent:d", "hand_off": "agent:a"}, {"agent": "agent:e"}]}
    refused(tmp_path, data, Directory.model_validate({"agents": agents}),
            "agents.3.hand_off.0: agent:d is in agent:d's branch of agent:b's fan-out: it cannot "
            "hand off to agent:a, which runs before the fork (a cycle)")


def test_a_hand_off_to_an_agent_that_forks_carries_its_branches_and_join(
        tmp_path: Path) -> None:
    """The fork point hands its branches and its join their scopes, so the token it receives
    must hold them: a fork at the second agent, not only at the first."""
    scopes = {"a": ["urn:infra:monitoring:read"], "b": ["urn:infra:infrastructure:read"],
              "c": ["urn:infra:repo:read"], "d": ["urn:infra:monitoring:read"],
              "e": ["urn:infra:infrastructure:read"]}
    holds = [s for own in scopes.values() for s in own]
    agents = {f"agent:{n}": {"allowed_scopes": holds, "hands_off_to": to} for n, to in (
        ("a", ["agent:b"]), ("b", ["agent:c", "agent:d"]), ("c", ["agent:e"]),
        ("d", ["agent:e"]), ("e", []))}
    data = {"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:a", "steps": [QUERY], "hand_off": "agent:b"},
        {"agent": "agent:b", "steps": [DESCRIBE],
         "hand_off": [{"to": ["agent:c", "agent:d"], "join": "agent:e"}]},
        {"agent": "agent:c", "steps": [READ_PR]}, {"agent": "agent:d", "steps": [QUERY]},
        {"agent": "agent:e", "steps": [DESCRIBE]}]}
    workflow = load(tmp_path, data, Directory.model_validate({"agents": agents}))
    assert downstream_scopes(workflow, "agent:a", "agent:b") == [
        "urn:infra:infrastructure:read", "urn:infra:repo:read", "urn:infra:monitoring:read"]
    assert downstream_scopes(workflow, "agent:b", "agent:c") == ["urn:infra:repo:read"]
    assert downstream_scopes(workflow, "agent:b", "agent:e") == ["urn:infra:infrastructure:read"]


def test_a_hand_off_to_an_agent_that_needs_no_scope_is_refused(tmp_path: Path,
                                                                directory: Directory) -> None:
    data = fan_out()
    data["agents"][4]["steps"] = []  # the join, with nothing after it
    refused(tmp_path, data, directory,
            "agents.0.hand_off.1: agent:cleanup needs no scope: it has no step and no agent "
            "after it has one, and a hand-off carries the scopes its target needs (give it a "
            "step, or leave it out)")


def test_a_branch_hands_off_to_the_join_only_by_ending(tmp_path: Path,
                                                       directory: Directory) -> None:
    data = fan_out()
    data["agents"][2]["hand_off"] = "agent:cleanup"
    refused(tmp_path, data, directory,
            "agents.2.hand_off.0: agent:argocd is in agent:argocd's branch of agent:infrabot's "
            "fan-out: it cannot hand off to the join agent:cleanup, which starts once every "
            "branch has ended")


def test_a_branch_does_not_fan_out(tmp_path: Path, with_commenter: Directory) -> None:
    data = sub_chain()
    data["agents"][3]["hand_off"] = [{"to": ["agent:commenter", "agent:rollback"],
                                      "join": "agent:argocd"}]
    data["agents"][0]["hand_off"] = [{"to": ["agent:scanner", "agent:cleanup"],
                                      "join": "agent:argocd"}]
    refused(tmp_path, data, with_commenter,
            "agents.3.hand_off.0: agent:scanner is in agent:scanner's branch of "
            "agent:infrabot's fan-out: a branch hands off to one agent at a time (no fan-out "
            "inside a branch)")


def test_a_branch_reads_no_step_of_a_sibling_branch(tmp_path: Path,
                                                    with_commenter: Directory) -> None:
    data = sub_chain()
    data["agents"][2]["steps"] = [{**DESCRIBE, "id": "rolled"}]
    data["agents"][4]["steps"][0]["when"] = "steps.rolled.ok == true"
    refused(tmp_path, data, with_commenter,
            "agents.4.steps.0.when: steps.rolled names no step that runs earlier")
    data["agents"][4]["steps"][0]["when"] = "steps.scan.state == 'open'"  # its own branch's
    assert load(tmp_path, data, with_commenter).plan("agent:commenter").steps[0].when


def test_a_cycle_is_refused(tmp_path: Path, directory: Directory) -> None:
    data = {"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:infrabot", "steps": [QUERY], "hand_off": "agent:argocd"},
        {"agent": "agent:argocd", "steps": [DESCRIBE], "hand_off": "agent:infrabot"}]}
    refused(tmp_path, data, directory, "agent:infrabot runs first; nothing may hand off to it")


def test_a_cycle_away_from_the_first_agent_is_refused(tmp_path: Path) -> None:
    directory = Directory.model_validate({"agents": {
        "agent:a": {"allowed_scopes": [], "hands_off_to": []},
        "agent:b": {"allowed_scopes": [], "hands_off_to": ["agent:c"]},
        "agent:c": {"allowed_scopes": [], "hands_off_to": ["agent:b"]}}})
    data = {"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:a", "steps": [QUERY]},
        {"agent": "agent:b", "hand_off": "agent:c"},
        {"agent": "agent:c", "hand_off": "agent:b"}]}
    refused(tmp_path, data, directory, "a cycle: agent:b -> agent:c -> agent:b")


def test_an_agent_nothing_reaches_is_refused(tmp_path: Path, directory: Directory) -> None:
    data = {"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:infrabot", "steps": [QUERY]},
        {"agent": "agent:argocd", "steps": [DESCRIBE]}]}
    refused(tmp_path, data, directory, "agent:argocd is never reached from agent:infrabot")


def test_an_agent_reached_two_ways_is_refused(tmp_path: Path, directory: Directory) -> None:
    data = fan_out()
    data["agents"][1]["hand_off"] = "agent:cleanup"
    refused(tmp_path, data, directory, "agent:cleanup is reached from several ways")


def test_every_hand_off_must_be_one_the_directory_allows(tmp_path: Path,
                                                         directory: Directory) -> None:
    data = {"name": "graph", "trigger": {"environments": ["prod"]}, "agents": [
        {"agent": "agent:infrabot", "steps": [QUERY], "hand_off": "agent:cleanup"},
        {"agent": "agent:cleanup", "steps": [DESCRIBE]}]}
    refused(tmp_path, data, directory,
            "the directory does not let agent:infrabot hand off to agent:cleanup")


def test_a_join_needs_every_branch_allowed_to_hand_off_to_it(tmp_path: Path,
                                                             directory: Directory) -> None:
    data = fan_out()
    data["agents"][0]["hand_off"][1] = {"to": ["agent:argocd", "agent:rollback"],
                                        "join": "agent:cleanup"}
    data["agents"][0]["hand_off"].pop(0)
    data["agents"][3]["agent"] = "agent:scanner"
    data["agents"].pop(3)
    refused(tmp_path, data, directory, "the directory does not let agent:rollback hand off to "
                                       "agent:cleanup (hands_off_to): a join continues from "
                                       "every branch it waits for")


def test_a_when_must_name_a_step_that_runs_earlier(tmp_path: Path,
                                                   directory: Directory) -> None:
    data = fan_out()
    data["agents"][0]["steps"][0]["when"] = "steps.latency.x > 1"
    refused(tmp_path, data, directory,
            "agents.0.steps.0.when: steps.latency names no step that runs earlier")
    data = fan_out()
    data["agents"][0]["hand_off"][0]["when"] = "steps.scan.ok == true"
    data["agents"][3]["steps"][0]["id"] = "scan"  # the scanner's: it runs later
    refused(tmp_path, data, directory,
            "agents.0.hand_off.0.when: steps.scan names no step that runs earlier")


def test_a_param_may_use_an_earlier_step_s_result(tmp_path: Path,
                                                  directory: Directory) -> None:
    data = fan_out()
    data["agents"][4]["steps"] = [{**READ_PR, "params": {
        **READ_PR["params"], "owner": "${steps.scan.head.repo.owner.login}"}}]
    data["agents"][3]["steps"][0]["id"] = "scan"  # a branch the join waits for: earlier
    assert load(tmp_path, data, directory).plan("agent:cleanup").steps
    data["agents"][1]["steps"] = data["agents"][4]["steps"]  # the rollback branch: not
    refused(tmp_path, data, directory,
            "agents.1.steps.0.params.owner: steps.scan names no step that runs earlier")


def test_a_step_id_is_used_once(tmp_path: Path, directory: Directory) -> None:
    data = fan_out()
    data["agents"][2]["steps"][0]["id"] = "latency"
    refused(tmp_path, data, directory, "step id latency is used twice")


def test_a_condition_that_does_not_parse_names_where(tmp_path: Path,
                                                     directory: Directory) -> None:
    data = fan_out()
    data["agents"][0]["hand_off"][0]["when"] = "steps.latency >"
    refused(tmp_path, data, directory, "agents.0.hand_off.0.when")


# --- the when: grammar ----------------------------------------------------------------------------

RESULTS = {"latency": {"series": [{"pointlist": [[1, 120.5], [2, 612.0]]}], "ok": True,
                       "name": "x"}}


@pytest.mark.parametrize(("text", "expected"), [
    (f"{LATENCY} > 500", True),
    (f"{LATENCY} <= 500", False),
    ("min(steps.latency.series.0.pointlist.*.1) < 200 and steps.latency.ok", True),
    ("not steps.latency.ok or steps.latency.name == 'x'", True),
    ("len(steps.latency.series) == 1", True),
    ("avg(steps.latency.series.0.pointlist.*.1) > 366", True),
    ("steps.latency.missing.path > 1", False),  # leads nowhere: null, never an error
    ("steps.latency.name > 1", False),  # a text and a number: false
    ("steps.nothing == null", True),
    ("(steps.latency.ok and false) or 1 == 1.0", True),
    ("steps.latency.series.-1.pointlist.0.1 == 120.5", True),
])
def test_conditions_evaluate_over_earlier_results(text: str, expected: bool) -> None:
    assert parse_condition(text)(RESULTS) is expected


@pytest.mark.parametrize("text", [
    "__import__('os').system('x')", "steps.latency.ok; 1", "open('/etc/passwd')",
    "steps.latency.ok +", "latency > 1", "max(1) > 0 >", "", "x" * 501, "steps.Latency.a",
    "(steps.latency.ok", "steps.latency.ok and",
])
def test_anything_else_is_refused_not_evaluated(text: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(text)


def test_a_condition_names_the_steps_it_reads() -> None:
    assert parse_condition("steps.a.x > 1 or max(steps.b.y) < 2").step_ids == {"a", "b"}
