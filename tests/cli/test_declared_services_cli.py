"""The command line with services declared by OpenAPI documents, as a user types it: the
preflight (``infrabot workflows check``) decides the declared step like any other, and a broken
document is one line naming the file and the JSON path: exit 2 from ``workflows check``,
``workflows list`` and ``infrabot check``, and ``infrabot serve`` refuses to start (exit 1,
its ``bad_configuration`` line)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from _cli import Result, clean_env, infrabot, run_all

REPO = Path(__file__).resolve().parents[2]
CHAT = "services/chat.openapi.yaml"


def test_the_preflight_allows_the_declared_step_for_sam(tmp_path: Path) -> None:
    result = infrabot("workflows", "check", "announce", "--user", "sam", "--json",
                      env=clean_env(INFRABOT_STATE_DIR=str(tmp_path / "state"))).ok()
    data = json.loads(result.stdout)
    assert data["all_allowed"] is True and data["root_granted"] == ["urn:infra:chat:write"]
    assert [(s["agent"], s["step"], s["verdict"]) for s in data["steps"]] == [
        ("agent:infrabot", "chat.postMessage", "allow")]


def test_the_preflight_refuses_the_declared_step_for_alex(tmp_path: Path) -> None:
    """alex holds no chat scope: the root grant has nothing to give (exit 1)."""
    result = infrabot("workflows", "check", "announce", "--user", "alex", "--json",
                      env=clean_env(INFRABOT_STATE_DIR=str(tmp_path / "state")))
    assert result.returncode == 1, result
    data = json.loads(result.stdout)
    assert data["user_lacks"] == ["urn:infra:chat:write"]
    assert [s["verdict"] for s in data["steps"]] == ["refuse"]


def _drop_scope(d: dict[str, Any]) -> None:
    d["paths"]["/channels/{channel}/messages"]["post"].pop("x-required-scope")


def _unknown_scope(d: dict[str, Any]) -> None:
    d["paths"]["/channels"]["get"]["x-required-scope"] = "urn:infra:chat:admin"


def _duplicate(d: dict[str, Any]) -> None:
    d["paths"]["/channels/{channel}"]["get"]["operationId"] = "listChannels"


@pytest.mark.parametrize(("edit", "line"), [
    (_drop_scope, ("$.paths['/channels/{channel}/messages'].post['x-required-scope']: missing: "
                  "every operation names the scope it requires")),
    (_unknown_scope, ("$.paths['/channels'].get['x-required-scope']: unknown scope "
                     "'urn:infra:chat:admin': not in directory.yaml services.chat.scopes")),
    (_duplicate, ("$.paths['/channels/{channel}'].get.operationId: duplicate operationId "
                 "'listChannels', also at $.paths['/channels'].get.operationId")),
], ids=["no-scope", "unknown-scope", "duplicate-operation-id"])
def test_a_broken_document_is_one_line_and_exit_2(tmp_path: Path,
                                                  edit: Callable[[dict[str, Any]], None],
                                                  line: str) -> None:
    folder = Path(shutil.copytree(REPO / "workflows", tmp_path / "workflows"))
    path = folder / CHAT
    document = yaml.safe_load(path.read_text())
    edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    env = clean_env(INFRABOT_WORKFLOWS_DIR=str(folder),
                    INFRABOT_STATE_DIR=str(tmp_path / "state"))
    results: list[Result] = run_all([
        (("workflows", "check", "announce", "--user", "sam"), env),
        (("workflows", "list"), env),
        (("check", "chat-announce"), env),
        (("serve", "--port-base", "0"), env),
    ])
    for result in results[:-1]:
        assert result.returncode == 2, result
        assert result.error_line() == f"{path}: {line}", result
    serve = results[-1]  # a system that cannot start: serve's own exit for bad configuration
    assert serve.returncode == 1, serve
    assert serve.error_line() == f"bad_configuration: {path}: {line}", serve


TWO = """\
name: two-services
description: posts to two declared services
trigger: {events: [deployment], environments: [prod], triggers: [ci_pipeline], task: two}
agents:
  - agent: agent:infrabot
    steps:
      - action: chat.postMessage
        params: {channel: deploys, text: one}
      - action: talk.postMessage
        params: {channel: deploys, text: two}
"""


def test_the_preflight_tells_two_declared_services_apart(tmp_path: Path) -> None:
    """Neither has a port of its own: each is still its own audience, with its own scopes."""
    folder = Path(shutil.copytree(REPO / "workflows", tmp_path / "workflows"))
    talk = (folder / CHAT).read_text().replace("urn:infra:chat:", "urn:infra:talk:")
    (folder / "services/talk.openapi.yaml").write_text(talk)
    directory = yaml.safe_load((folder / "directory.yaml").read_text())
    scopes = ["urn:infra:talk:read", "urn:infra:talk:write"]
    directory["services"]["talk"] = {"scopes": scopes}
    directory["users"]["user:sam"]["permissions"] += scopes
    directory["agents"]["agent:infrabot"]["allowed_scopes"] += scopes
    (folder / "directory.yaml").write_text(yaml.safe_dump(directory, sort_keys=False))
    (folder / "two.yaml").write_text(TWO)
    result = infrabot("workflows", "check", "two-services", "--user", "sam", "--json",
                      env=clean_env(INFRABOT_WORKFLOWS_DIR=str(folder),
                                    INFRABOT_STATE_DIR=str(tmp_path / "state"))).ok()
    data = json.loads(result.stdout)
    assert data["root_granted"] == ["urn:infra:chat:write", "urn:infra:talk:write"]
    assert [(s["step"], s["verdict"]) for s in data["steps"]] == [
        ("chat.postMessage", "allow"), ("talk.postMessage", "allow")]
