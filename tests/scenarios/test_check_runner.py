"""``infrabot check`` on scenarios written here: a deliberately wrong expectation is caught (exit 1,
the mismatch named with expected and actual, a JUnit failure), and a revocation at the root grant
or of the run mid-chain lands where the scenario says. One system runs all three (their changes
are identical but for the revocation)."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infrabot.cli._check import check
from infrabot.scenarios import ScenarioResult, summary_line
from orchestrator._words import plural

ALEX_EXPECTS_SUCCESS = """\
name: alex-expects-success
description: wrong on purpose; alex lacks the deploy scopes, so the run is denied
event: {type: deployment, user: alex, environment: prod, trigger: ci_pipeline}
expect:
  status: succeeded
  root: {dropped: [urn:infra:deploy:create, urn:infra:infrastructure:tag,
                   urn:infra:infrastructure:clean, urn:infra:incident:resolve]}
  hops:
    agent:infrabot:
      - {step: datadog.metrics.query, exchange: allow, call: allow}
      - {step: github.pull.read, exchange: allow, call: allow}
      - {step: github.comment.create, exchange: allow, call: allow}
      - {step: hand_off, exchange: allow}
"""
REVOKE_AT_ROOT = """\
name: revoke-after-root-grant
event: {user: sam, environment: prod}
changes:
  revoke: {after: root_grant}
expect:
  status: denied
  reason: "datadog.metrics.query: invalid_request (user_revoked)"
  hops:
    agent:infrabot:
      - {step: datadog.metrics.query, exchange: deny, error: invalid_request, reason: user_revoked}
    agent:argocd: not_run
"""
REVOKE_RUN = """\
name: revoke-run-after-infrabot
event: {user: sam, environment: prod}
changes:
  revoke: {after: agent:infrabot, what: run}
expect:
  status: denied
  hops:
    agent:argocd:
      - {step: github.deployment_status.create, exchange: deny, error: invalid_request,
         reason: run_revoked}
    agent:cleanup: not_run
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("check")
    folder = base / "scenarios"
    folder.mkdir()
    for name, text in (("alex.yaml", ALEX_EXPECTS_SUCCESS), ("root.yaml", REVOKE_AT_ROOT),
                       ("run.yaml", REVOKE_RUN)):
        (folder / name).write_text(text)
    junit = base / "check.xml"
    result = CliRunner().invoke(check, ["--dir", str(folder), "--junit", str(junit), "--keep",
                                        "--state-dir", str(base / "state"), "--jobs", "1"])
    return {"result": result, "junit": ET.parse(junit).getroot(), "state": base / "state"}


def test_a_mismatch_exits_1(checked: dict[str, Any]) -> None:
    result = checked["result"]
    assert result.exit_code == 1, result.output
    assert "3 scenarios: 2 passed, 1 failed" in result.stdout


def test_the_output_names_the_mismatch_with_expected_and_actual(checked: dict[str, Any]) -> None:
    out = checked["result"].stdout
    assert "✗ alex-expects-success" in out
    status = next(line for line in out.splitlines() if "✗  status" in line)
    assert "expected succeeded" in status
    assert any(line.strip() == "actual   denied" for line in out.splitlines())
    # the hop's diff: the expected hand-off line and the actual one, with the refusal's codes
    assert "-hand_off: exchange=allow" in out
    assert "+hand_off: exchange=deny error=invalid_scope reason=scope_not_grantable" in out
    # what did match is still reported as passing
    assert "✓  root.dropped" in out and "✓  webhook" in out


def test_junit_has_a_failure_for_the_mismatch_only(checked: dict[str, Any]) -> None:
    root = checked["junit"]
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "0")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["alex-expects-success"].find("failure")
    assert failure is not None
    assert failure.get("message") == \
        "2 of 4 expectations mismatched: status, hops.agent:infrabot"
    assert "expected: succeeded" in (failure.text or "")
    assert "+hand_off: exchange=deny" in (failure.text or "")
    for name in ("revoke-after-root-grant", "revoke-run-after-infrabot"):
        assert cases[name].find("failure") is None and cases[name].find("error") is None


def test_revocations_land_where_the_scenarios_say(checked: dict[str, Any]) -> None:
    out = checked["result"].stdout
    assert "✓ revoke-after-root-grant" in out and "✓ revoke-run-after-infrabot" in out
    assert "revoked user user:sam after the root grant" in out
    assert "after agent:infrabot handed off" in out


def test_keep_leaves_the_runs_for_runs_show(checked: dict[str, Any]) -> None:
    """Each scenario ran on a fresh system of its own, and --keep left each one's run log."""
    databases = sorted(Path(checked["state"]).glob("check/*/group-*/state/runs.sqlite3"))
    assert len(databases) == 3
    users = []
    for runs_db in databases:
        with sqlite3.connect(runs_db) as conn:
            rows = [row[0] for row in conn.execute("SELECT user FROM runs")]
        conn.close()
        assert len(rows) == 1
        users += rows
    assert sorted(users) == ["user:alex", "user:sam", "user:sam"]



def test_the_summary_line_counts_in_the_singular_for_one() -> None:
    one = ScenarioResult(name="one", path="one.yaml", error="could not run")
    assert summary_line([one], 0.5) == ("1 scenario: 0 passed, 0 failed, 1 could not run"
                                        " · 0 expectations, 0 mismatched · 0.5 s")
    assert [plural(n, "scenario") for n in (0, 1, 2)] == ["0 scenarios", "1 scenario",
                                                           "2 scenarios"]
    assert (plural(1, "query", "queries"), plural(3, "query", "queries")) == \
        ("1 query", "3 queries")
