"""The commands that work against a running ``infrabot serve`` (loopback, every port chosen by
the OS, a temporary state directory), run as a user runs them: ``simulate``, ``runs``,
``revoke`` and ``token`` against that system. (Without a usable system: test_errors_cli.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from _cli import clean_env, infrabot, serving

from orchestrator.audit import contains_raw_jwt
from tests._redis import flushed_redis

# the shipped chat service is declared by workflows/services/chat.openapi.yaml
SERVERS = ("auth", "datadog", "github", "aws", "pagerduty", "chat", "webhooks")
CLI_REDIS_DB = 10  # this module's database; flushed before and after use
SCENARIO = """\
name: cli-scenario
events:
  - {user: sam, environment: staging}
  - {user: robin, env: prod, count: 2}
  - user: "user:alex"
    environment: prod
    trigger: ci_pipeline
    expect: {status: denied, reason: scope_not_grantable}
"""


def summary(env: dict[str, str], *args: str) -> dict[str, object]:
    data = infrabot("simulate", *args, "--json", env=env).ok().json()
    assert isinstance(data, dict)
    return data


def test_serve_writes_endpoints_of_every_server_on_loopback(system: dict[str, str]) -> None:
    assert sorted(system) == sorted(SERVERS)
    ports = set()
    for url in system.values():
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("http", "127.0.0.1"), url
        ports.add(parts.port)
    assert len(ports) == len(SERVERS)
    assert httpx.get(system["auth"] + "/health", timeout=5).status_code == 200


def test_simulate_deploy_for_sam_is_one_succeeded_run(env: dict[str, str],
                                                      system: dict[str, str]) -> None:
    data = summary(env, "deploy", "--user", "sam")
    assert (data["sent"], data["accepted"], data["unfinished"]) == (1, 1, 0)
    assert data["statuses"] == {"succeeded": 1}
    assert data["refused"] == {} and data["denials"] == {}
    latency = data["latency_ms"]
    assert isinstance(latency, dict) and latency["p50"] is not None and latency["p50"] > 0
    assert isinstance(data["exchanges"], int) and data["exchanges"] > 0


def test_simulate_deploy_for_alex_shows_the_denial_reason(env: dict[str, str],
                                                          system: dict[str, str]) -> None:
    result = infrabot("simulate", "deploy", "--user", "alex", env=env)
    assert result.returncode == 1  # a denied run was not expected
    assert "status  denied" in result.stdout
    assert "invalid_scope (scope_not_grantable)" in result.stdout
    assert "(scope_not_grantable)" in result.error_line()  # no progress bars: not a terminal


def test_simulate_load_accounts_for_every_event(env: dict[str, str],
                                                system: dict[str, str]) -> None:
    data = summary(env, "load", "--count", "30", "--rate", "30", "--bad-ratio", "0.2")
    refused, statuses, denials = data["refused"], data["statuses"], data["denials"]
    assert isinstance(refused, dict) and isinstance(statuses, dict) and isinstance(denials, dict)
    assert data["sent"] == 30
    assert data["accepted"] + sum(refused.values()) == 30  # type: ignore[operator]
    assert data["unfinished"] == 0
    assert sum(statuses.values()) == data["accepted"]
    assert refused and denials, data  # bad events refused at the receiver, runs denied by policy
    assert sum(denials.values()) == data["accepted"] - statuses.get("succeeded", 0)  # type: ignore[operator]
    assert {"malformed_event", "bad_signature", "missing_signature"} & set(refused)
    assert "scope_not_grantable" in denials


def test_simulate_scenario_sends_the_files_events(env: dict[str, str], system: dict[str, str],
                                                  tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    data = summary(env, "scenario", str(path), "--rate", "50")
    assert (data["sent"], data["accepted"], data["unfinished"]) == (4, 4, 0)
    # sam's staging run acts on staging's own resources; alex may not deploy
    assert data["statuses"] == {"succeeded": 3, "denied": 1}
    assert data["denials"] == {"scope_not_grantable": 1}


def test_runs_list_and_show_the_runs_above(env: dict[str, str],
                                           system: dict[str, str]) -> None:
    runs = infrabot("runs", "list", "--json", "--limit", "100", env=env).ok().json()
    assert isinstance(runs, list) and len(runs) >= 1 + 1 + 30 // 2 + 4, runs
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True)  # newest first
    assert {"succeeded", "denied"} <= {r["status"] for r in runs}
    denied = infrabot("runs", "list", "--json", "--user", "user:alex", "--status", "denied",
                      env=env).ok().json()
    assert isinstance(denied, list) and len(denied) >= 2  # the deploy and the scenario's
    assert {(r["user"], r["status"]) for r in denied} == {("user:alex", "denied")}
    table = infrabot("runs", "list", env=env).ok()
    assert runs[0]["run_id"] in table.stdout
    assert "post-deploy" in table.stdout and "user:alex" in table.stdout
    assert not contains_raw_jwt(table.stdout + str(runs))

    run_id = next(r["run_id"] for r in runs
                  if (r["user"], r["status"]) == ("user:sam", "succeeded"))
    shown = infrabot("runs", "show", run_id, env=env).ok()
    assert run_id in shown.stdout
    for agent in ("agent:infrabot", "agent:argocd", "agent:cleanup"):
        assert agent in shown.stdout
    data = infrabot("runs", "show", run_id, "--json", env=env).ok().json()
    assert isinstance(data, dict)
    assert (data["run_id"], data["user"], data["status"]) == (run_id, "user:sam", "succeeded")
    kinds = [e["kind"] for e in data["events"]]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "handed_off" in kinds
    assert not contains_raw_jwt(shown.stdout + str(data))


def test_runs_show_of_an_unknown_run_is_one_error_line(env: dict[str, str],
                                                       system: dict[str, str]) -> None:
    assert infrabot("runs", "show", "run-nope", env=env).error_line() == "no run 'run-nope'"


def test_cli_tokens_and_assertions_are_for_the_running_server(env: dict[str, str],
                                                              system: dict[str, str]) -> None:
    """``token user`` asks the running system's authorization server for the root token (so it
    is rooted in that server's revocation registry), and ``token assertion`` names the issuer
    the running system uses (its ports were chosen by the OS), so the curl example of
    ``token assertion --help`` works."""
    issued = infrabot("token", "user", "user:sam", "--env", "prod", "--trigger",
                      "ci_pipeline", env=env).ok()
    assert f"by {system['auth']}" in issued.stderr
    subject = issued.stdout.strip()
    assertion = infrabot("token", "assertion", "agent:infrabot", env=env).ok().stdout.strip()
    # the root token is bound to InfraBot's DPoP key: the exchange proves it
    dpop = infrabot("token", "proof", "agent:infrabot", env=env).ok().stdout.strip()
    response = httpx.post(system["auth"] + "/token", timeout=10, headers={"DPoP": dpop}, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion, "resource": system["github"],
        "scope": "urn:infra:repo:read"})
    assert response.status_code == 200, response.text
    exchanged = response.json()["access_token"]
    text = infrabot("token", "inspect", exchanged, env=env).ok()
    assert text.stdout.startswith("valid: ")
    assert f"revocation check: not revoked (asked {system['auth']})" in text.text
    assert "user:sam (principal)" in text.stdout and "acts: agent:infrabot" in text.stdout
    assert f"aud: {system['github']}" in text.stdout
    assert "cnf: jkt=" in text.stdout  # bound to the key that proved the exchange


def test_revoke_user_prints_the_new_version_and_new_runs_still_start(
        env: dict[str, str], system: dict[str, str]) -> None:
    before = infrabot("token", "user", "user:sam", env=env).ok().stdout.strip()
    revoked = infrabot("revoke", "--user", "user:sam", env=env).ok().stdout.strip()
    assert revoked.startswith("revoked every delegation of user:sam (revocation version ")
    assert revoked.endswith("): tokens rooted before now are refused")
    assert int(revoked.split("revocation version ")[1].split(")")[0]) >= 1
    # Revoking bumps sam's version: tokens minted before it die, a new run mints a new root.
    data = summary(env, "deploy", "--user", "sam")
    assert data["statuses"] == {"succeeded": 1}
    # The running system's registry is in its process: inspect asks it (RFC 7662 introspection).
    inspected = infrabot("token", "inspect", "--json", before, env=env)
    assert inspected.returncode == 1, inspected
    data = inspected.json()
    assert isinstance(data, dict)
    assert (data["valid"], data["reason"]) == (False, "inactive")
    assert data["revocation"] == f"refused by {system['auth']} (introspection: inactive)"


def test_revoke_run_and_jti_name_what_was_revoked(env: dict[str, str],
                                                  system: dict[str, str]) -> None:
    result = infrabot("revoke", "--run", "run-0123456789abcdef", env=env).ok()
    assert result.stdout.strip() == "revoked every token of run run-0123456789abcdef"
    # revoked ahead, as asked; a mistyped id in an incident must not read as the run stopped
    assert result.stderr.strip() == ("note: the run log has no run 'run-0123456789abcdef'; if "
                                     "you meant a run already started, check the id "
                                     "(`infrabot runs list`)")
    summary(env, "deploy", "--user", "sam")  # a run the run log knows
    [run] = infrabot("runs", "list", "--json", "--limit", "1", env=env).ok().json()
    result = infrabot("revoke", "--run", run["run_id"], env=env).ok()
    assert result.stderr == ""  # a run the run log knows: no note
    result = infrabot("revoke", "--jti", "abcdefgh12345678", env=env).ok()
    assert result.stdout.strip() == ("revoked token abcdefgh12345678 and every token "
                                     "exchanged from it")


def test_a_second_serve_on_the_same_state_directory_is_refused(env: dict[str, str],
                                                               system: dict[str, str]) -> None:
    """It would write its endpoints.json over the first's and delete it when it stopped,
    leaving every other command saying no system runs while the first still served."""
    result = infrabot("serve", "--port-base", "0", env=env)
    assert result.returncode == 1, result
    assert re.fullmatch(r"state directory \S+ is in use by another `infrabot serve` \(pid "
                        r"\d+\): stop it first, or give this one a --state-dir of its own",
                        result.error_line()), result
    assert json.loads((Path(env["INFRABOT_STATE_DIR"]) / "endpoints.json").read_text()) == system
    assert httpx.get(system["auth"] + "/health", timeout=5).status_code == 200


# --- with the Redis revocation registry ----------------------------------------------------


@pytest.fixture
def cli_redis_url() -> Iterator[str]:
    """Redis db 10, flushed before and after (tests/_redis.py)."""
    with flushed_redis(CLI_REDIS_DB) as url:
        yield url


@pytest.mark.redis
def test_token_minted_before_a_user_revocation_is_refused_by_inspect(
        tmp_path: Path, cli_redis_url: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=cli_redis_url)
    with serving(state, env):
        before = infrabot("token", "user", "user:sam", env=env).ok().stdout.strip()
        infrabot("revoke", "--user", "user:sam", env=env).ok()
        result = infrabot("token", "inspect", before, env=env)
        assert result.returncode == 1, result
        assert result.stdout.startswith("invalid: user_revoked: ")
        assert "UNVERIFIED" not in result.stdout  # the signature was good; the user is revoked
    assert not (state / "endpoints.json").exists(), "a stopped serve left endpoints.json"
