"""``infrabot demo`` as a user runs it: the story on stdout, the JSON summary a script reads
(never a raw token), the HTML report, and the short form without attacks or baseline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _cli import clean_env, infrabot

from orchestrator.audit import contains_raw_jwt

SECTIONS = ("1 · CI event", "2 · Root grant", "3 · Hops", "4 · Audit trail of the run",
            "5 · Attack round", "6 · The same workflow without delegation")
ATTACKS = 15  # the nine of the first round, a replayed CI delivery, a staging token
# against a prod resource, a rewritten audit record, DPoP's two (a stolen service token
# without its key, a hand-off presented with another DPoP key) and a delegation chain its
# delegator never signed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return clean_env(INFRABOT_STATE_DIR=str(tmp_path_factory.mktemp("demo") / "state"))


def test_demo_prints_every_section_and_the_verdict(env: dict[str, str]) -> None:
    result = infrabot("demo", env=env).ok()
    for title in SECTIONS:
        assert title in result.stdout, title
    assert f"attacks refused {ATTACKS}/{ATTACKS}" in result.text
    assert "audit chain intact" in result.text
    assert "run succeeded" in result.text
    assert "… CI event" in result.stderr  # progress goes to stderr, the story to stdout
    assert not contains_raw_jwt(result.stdout + result.stderr)


def test_demo_json_is_a_summary_without_raw_tokens(env: dict[str, str]) -> None:
    result = infrabot("demo", "--json", env=env).ok()
    data = result.json()
    assert isinstance(data, dict)
    assert data["run"]["status"] == "succeeded"
    assert data["run"]["user"] == "user:sam"
    trace_id = data["trace_id"]  # the run's trace, joined with every audit record of the run
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert {r["context"]["trace_id"] for r in data["audit"]} == {trace_id}
    assert len(data["attacks"]) == ATTACKS
    assert all(a["refused"] for a in data["attacks"]), data["attacks"]
    for attack in data["attacks"]:  # refused *and* audited: the JSON alone proves both
        if attack["name"] == "rewritten audit record":  # no request: audit verify refuses it
            assert attack["audited"] is None and attack["audit"] == [], attack
            continue
        assert attack["audited"] is True, attack
        refusals = [r for r in attack["audit"] if r["decision"] == "deny"]
        assert any(attack["reason"] == r["reason"] for r in refusals), attack
    [replayed] = [a for a in data["attacks"] if a["name"] == "replayed CI delivery"]
    assert (replayed["status"], replayed["code"], replayed["reason"]) == (
        409, "conflict", "replayed_delivery")  # and audited: the attack checks the trail
    assert data["audit_intact"] is True
    assert data["static_run"]["status"] == "succeeded"
    assert not contains_raw_jwt(result.stdout)
    # Every hand-off of the run confirmed by its delegator, each record verified (issue 16).
    chains = data["delegation_chains"]
    assert chains, data["delegation_chains"]
    # post-deploy forks at InfraBot and joins from it (docs/graphs.md): one record each
    assert sorted((r["delegator"], r["delegatee"]) for c in chains for r in c["records"]) == [
        ("agent:infrabot", "agent:argocd"), ("agent:infrabot", "agent:cleanup"),
        ("agent:infrabot", "agent:scanner")]
    assert {r["status"] for c in chains for r in c["records"]} == {"verified"}
    [unsigned] = [a for a in data["attacks"]
                  if a["name"] == "delegation chain its delegator never signed"]
    assert (unsigned["status"], unsigned["reason"]) == (401, "delegation_signature_invalid")


def test_demo_without_attacks_or_baseline_tells_only_the_run_and_writes_the_report(
        env: dict[str, str], tmp_path: Path) -> None:
    report = tmp_path / "out [1]" / "demo.html"
    result = infrabot("demo", "--no-attacks", "--no-baseline", "--report", str(report),
                      env=env).ok()
    for title in SECTIONS[:4]:
        assert title in result.stdout, title
    for title in SECTIONS[4:]:
        assert title not in result.stdout, title
    assert "run succeeded" in result.text
    assert "audit chain intact" in result.text
    assert f"report written to {report}\n" in result.stderr  # one line, whatever the path
    html = report.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert not contains_raw_jwt(html)
    assert "delegation_chain (delegator-confirmed): agent:infrabot → agent:cleanup verified" \
        in html.replace("&gt;", ">")


def test_demo_report_into_an_unwritable_place_is_one_error_line_before_the_run(
        env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = infrabot("demo", "--report", str(blocker / "demo.html"), env=env)
    assert result.error_line().startswith(f"cannot write the report {blocker / 'demo.html'}: ")
    assert "CI event" not in result.stderr  # refused before the demo ran
