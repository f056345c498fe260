"""The directory file: the shipped one loads, and every bad file names the file and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator._yamlfile import load_yaml
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory, parse_scopes
from orchestrator.workflows import load_directory

from .conftest import make_ctx

# --- the shipped directory -----------------------------------------------------------------------

def test_shipped_directory_has_the_story_cast(directory: Directory) -> None:
    assert set(directory.users) == {"user:sam", "user:alex", "user:robin", "user:former-employee"}
    assert set(directory.agents) == {"agent:infrabot", "agent:scanner", "agent:notifier",
                                     "agent:rollback", "agent:argocd", "agent:cleanup"}
    # chat: declared by workflows/services/chat.openapi.yaml (docs/openapi-services.md)
    assert set(directory.services) == {"datadog", "github", "aws", "pagerduty", "chat"}
    assert directory.client_ids() == [
        "agent:infrabot", "agent:scanner", "agent:notifier", "agent:rollback", "agent:argocd",
        "agent:cleanup", "client:orchestrator"]
    assert directory.queues() == {a: a.removeprefix("agent:") for a in directory.agents}
    assert directory.clients["client:orchestrator"].trusted


def test_shipped_hand_offs_never_let_infrabot_skip_to_cleanup(directory: Directory) -> None:
    assert directory.agents["agent:infrabot"].hands_off_to == (
        "agent:argocd", "agent:scanner", "agent:rollback")
    assert directory.agents["agent:argocd"].hands_off_to == ("agent:cleanup",)
    assert directory.agents["agent:scanner"].hands_off_to == ("agent:cleanup", "agent:notifier")
    assert directory.agents["agent:notifier"].hands_off_to == ("agent:cleanup",)
    assert directory.agents["agent:cleanup"].hands_off_to == ()
    assert directory.agents["agent:rollback"].hands_off_to == ()


def test_two_agents_cannot_share_a_queue(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text("agents:\n  agent:a: {allowed_scopes: [], queue: q}\n"
                    "  agent:b: {allowed_scopes: [], queue: q}\n")
    with pytest.raises(ConfigError, match=r"directory.yaml:3: agents.agent:b.queue: "
                                          r"agent:b and agent:a share the queue 'q'"):
        load_directory(path)


def test_secrets_manage_is_held_by_sam_and_grantable_to_no_agent(directory: Directory) -> None:
    assert "urn:infra:secrets:manage" in directory.users["user:sam"].permissions
    for agent in directory.agents.values():
        assert "urn:infra:secrets:manage" not in agent.allowed_scopes


def test_former_employee_is_disabled(directory: Directory) -> None:
    assert directory.users["user:former-employee"].disabled
    assert not directory.users["user:sam"].disabled


def test_every_shipped_scope_is_well_formed(directory: Directory) -> None:
    everything = [s for u in directory.users.values() for s in u.permissions]
    everything += [s for a in directory.agents.values() for s in a.allowed_scopes]
    everything += [s for svc in directory.services.values() for s in svc.scopes]
    assert parse_scopes(" ".join(sorted(set(everything))))


def test_the_shipped_context_rule_only_lets_ci_change_prod(directory: Directory) -> None:
    manual_prod = make_ctx(trigger="manual", environment="prod")
    assert directory.context_permits("urn:infra:monitoring:read", manual_prod)
    assert not directory.context_permits("urn:infra:deploy:create", manual_prod)
    assert directory.context_permits("urn:infra:deploy:create", make_ctx())
    assert directory.context_permits("urn:infra:deploy:create",
                                     make_ctx(trigger="manual", environment="staging"))


# --- bad files -----------------------------------------------------------------------------------

VALID = """\
# A small directory.
users:
  user:sam:
    permissions:
      - urn:infra:monitoring:read
      - urn:infra:deploy:create
agents:
  agent:infrabot:
    allowed_scopes: [urn:infra:monitoring:read]
    hands_off_to: [agent:argocd]
  agent:argocd:
    allowed_scopes:
      - urn:infra:deploy:create
services:
  datadog:
    scopes: [urn:infra:monitoring:read]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "directory.yaml"
    path.write_text(text)
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_directory(path)
    assert info.value.reason == "bad_configuration"
    return str(info.value)


def assert_names_file_and_line(message: str, path: Path, line: int) -> None:
    match = re.match(rf"^{re.escape(str(path))}:(\d+): ", message)
    assert match, message
    assert int(match.group(1)) == line, message


def test_the_valid_sample_loads(tmp_path: Path) -> None:
    directory = load_directory(write(tmp_path, VALID))
    assert set(directory.agents) == {"agent:infrabot", "agent:argocd"}


def test_bad_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("    hands_off_to: [agent:argocd]",
                                         "    hands_off_to: [agent:argocd"))
    message = config_error(path)
    assert_names_file_and_line(message, path, 11)
    assert "not valid YAML" in message


def test_a_user_given_twice_is_refused_not_settled_by_the_last(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys; a directory naming sam twice would lose one of
    his entries without a word."""
    path = write(tmp_path, VALID.replace("agents:\n", "  user:sam:\n    permissions: []\n"
                                                      "agents:\n"))
    message = config_error(path)
    assert_names_file_and_line(message, path, 7)  # the second one
    assert message.endswith("not valid YAML: found the key 'user:sam' twice")


def test_a_directory_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "x-deep: " + "[" * 5000 + "]" * 5000 + "\n")
    assert config_error(path) == f"{path}: not valid YAML: nested too deeply"


def aliases_repeating(levels: int) -> str:
    """Nested aliases, each level ten uses of the one before: 10**levels values in a few
    hundred bytes."""
    return "x-nested:\n  l0: &l0 [v, v, v, v, v, v, v, v, v, v]\n" + "".join(
        f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, levels))


def test_aliases_repeating_too_many_values_are_refused_before_anything_reads_them(
        tmp_path: Path) -> None:
    path = write(tmp_path, VALID + aliases_repeating(9))  # a billion values
    assert config_error(path) == \
        f"{path}: not valid YAML: its aliases repeat more than 100,000 values"


def test_a_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace(
        "services:\n  datadog:\n    scopes: [urn:infra:monitoring:read]\n",
        "services:\n  datadog: &dd\n    scopes: [urn:infra:monitoring:read]\n"
        "  github:\n    <<: *dd\n    scopes: [urn:infra:repo:read]\n"))
    services = load_directory(path).services
    assert (list(services["datadog"].scopes), list(services["github"].scopes)) == (
        ["urn:infra:monitoring:read"], ["urn:infra:repo:read"])


@pytest.mark.parametrize("text", [
    ("defaults: &defaults {timeout: 30, retries: 1}\nservices:\n  github:\n    calls:\n"
     "      - &read\n        <<: *defaults\n        retries: 3\n  datadog:\n    <<: *read\n"),
    "- - &mid\n    <<: {a: 1}\n    a: 2\n- <<: *mid\n",
], ids=["anchor in a list, merged later", "anchor nested deeper than its merge"])
def test_merges_read_as_yaml_reads_them_whatever_the_order(tmp_path: Path, text: str) -> None:
    """A mapping's own keys are checked as written: a merge applied to it first (PyYAML
    flattens merged keys into the node) is no key given twice."""
    path = tmp_path / "merged.yaml"
    path.write_text(text)
    assert load_yaml(path)[0] == yaml.safe_load(text)


def test_tab_indentation_is_bad_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  agent:argocd:\n", "\tagent:argocd:\n"))
    assert_names_file_and_line(config_error(path), path, 11)


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("    hands_off_to: [agent:argocd]\n",
                                         "    hands_off_to: [agent:argocd]\n    colour: blue\n"))
    message = config_error(path)
    assert_names_file_and_line(message, path, 11)
    assert "colour" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "groups: {}\n")
    assert_names_file_and_line(config_error(path), path, 17)


def test_malformed_scope_in_permissions(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("      - urn:infra:deploy:create\n",
                                         "      - deploy:create\n"))
    message = config_error(path)
    assert_names_file_and_line(message, path, 6)
    assert "deploy:create" in message


def test_malformed_scope_in_a_flow_list(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("    scopes: [urn:infra:monitoring:read]",
                                         "    scopes: [urn:infra:monitoring:READ]"))
    assert_names_file_and_line(config_error(path), path, 16)


def test_hand_off_to_unknown_agent(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("hands_off_to: [agent:argocd]",
                                         "hands_off_to: [agent:argocd, agent:mallory]"))
    message = config_error(path)
    assert_names_file_and_line(message, path, 10)
    assert "agent:mallory" in message


def test_hand_off_to_itself(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("      - urn:infra:deploy:create\nservices",
                                         "      - urn:infra:deploy:create\n"
                                         "    hands_off_to:\n      - agent:argocd\nservices"))
    message = config_error(path)
    assert_names_file_and_line(message, path, 15)


BAD_USER_IDS = ["user:Sam", "sam", "agent:sam", "user:sam\\n", "user:"]

@pytest.mark.parametrize("bad", BAD_USER_IDS)
def test_bad_user_id(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, VALID.replace(
        "  user:sam:\n    permissions:\n",
        f'  "{bad}": {{disabled: false}}\n  user:sam:\n    permissions:\n'))
    message = config_error(path)
    assert_names_file_and_line(message, path, 3)
    assert "users." in message


@pytest.mark.parametrize("bad", BAD_USER_IDS[:2])
def test_bad_user_id_of_a_block_entry_names_the_key_line(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, VALID.replace("  user:sam:\n", f'  "{bad}":\n'))
    assert_names_file_and_line(config_error(path), path, 3)


def test_bad_agent_id(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  agent:argocd:\n", "  argocd: {allowed_scopes: []}\n"
                                         "  agent:argocd:\n"))
    assert_names_file_and_line(config_error(path), path, 11)


def test_bad_client_id(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "clients:\n  user:orchestrator: {trusted: true}\n")
    assert_names_file_and_line(config_error(path), path, 18)


def test_bad_context_rule(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "context_rules:\n  - environment: prod\n"
                                   "    require_trigger: ci_pipeline\n    applies_to: reads\n")
    assert_names_file_and_line(config_error(path), path, 20)


def test_top_level_list(tmp_path: Path) -> None:
    path = write(tmp_path, "- user:sam\n")
    assert_names_file_and_line(config_error(path), path, 1)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert str(path) in config_error(path)


def test_empty_file_is_an_empty_directory(tmp_path: Path) -> None:
    assert load_directory(write(tmp_path, "# nothing yet\n")) == Directory()
