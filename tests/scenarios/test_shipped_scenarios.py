"""Every shipped scenario (workflows/scenarios/*.yaml) passes end to end, run once as a set the
way a user runs it: ``infrabot check --json --junit FILE``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from infrabot.cli._check import check

SCENARIOS = Path(__file__).resolve().parents[2] / "workflows" / "scenarios"
SHIPPED = sorted(yaml.safe_load(p.read_text())["name"] for p in SCENARIOS.glob("*.yaml"))
# The reference article's examples, each covered by a shipped scenario.
ARTICLE_EXAMPLES = {
    "happy-path", "alex-lacks-deploy", "secrets-never-delegated", "manual-prod-narrowed",
    "manual-staging-allowed", "depth-limit", "narrowed-agent", "narrowed-hand-off",
    "revoked-mid-run", "disabled-user", "rollback", "workflow-run-event",
}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    junit = tmp_path_factory.mktemp("junit") / "check.xml"
    result = CliRunner().invoke(check, ["--json", "--junit", str(junit)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return {"report": report, "junit": ET.parse(junit).getroot(),
            "by_name": {s["name"]: s for s in report["scenarios"]}}


def test_at_least_ten_scenarios_cover_the_article() -> None:
    assert len(SHIPPED) >= 10
    assert set(SHIPPED) >= ARTICLE_EXAMPLES


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(shipped: dict[str, Any], name: str) -> None:
    scenario = shipped["by_name"][name]
    failed = [c for c in scenario["checks"] if not c["passed"]]
    assert scenario["error"] is None, scenario["error"]
    assert failed == [], failed
    assert scenario["passed"] is True
    assert len(scenario["checks"]) >= 1


def test_summary_and_junit_agree(shipped: dict[str, Any]) -> None:
    summary = shipped["report"]["summary"]
    assert shipped["report"]["passed"] is True
    assert (summary["scenarios"], summary["passed"], summary["mismatched"]) == \
        (len(SHIPPED), len(SHIPPED), 0)
    root = shipped["junit"]
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == \
        (str(len(SHIPPED)), "0", "0")
    cases = root.findall("./testsuite/testcase")
    assert sorted(c.get("name") for c in cases) == SHIPPED
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)


def test_revocation_mid_run_is_reported(shipped: dict[str, Any]) -> None:
    scenario = shipped["by_name"]["revoked-mid-run"]
    assert scenario["notes"] == ["revoked user user:sam after agent:infrabot handed off"]
    kinds = [(e["agent"], e["kind"]) for e in scenario["run"]["events"]]
    handed = kinds.index(("agent:infrabot", "handed_off"))
    assert ("agent:argocd", "exchange_denied") in kinds[handed:]


def test_json_never_holds_a_raw_token(shipped: dict[str, Any]) -> None:
    from orchestrator.audit import contains_raw_jwt

    assert not contains_raw_jwt(json.dumps(shipped["report"]))
