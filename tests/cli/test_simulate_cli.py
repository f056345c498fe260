"""``infrabot simulate`` as a user types it: one event's run id, status, reason and the command
that shows it; exit codes judged against what was expected (a scenario file's ``expect:``);
files ``simulate`` cannot honour refused with a pointer to ``infrabot check``; and the hint
when no worker picks a run up (distributed mode, Redis broker, no ``infrabot worker``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _cli import Result, clean_env, infrabot, serving

from infrabot.cli._simulate import PICKUP_HINT_SECONDS
from tests._redis import flushed_redis

NO_WORKER_REDIS_DB = 9  # this module's database; flushed before and after use
RUN_ID = r"run-[0-9a-f]+"


def rows(result: Result) -> dict[str, str]:
    """The ``label  value`` lines one event prints."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())


def scenario(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return str(path)


def test_one_event_prints_its_run_status_reason_and_how_to_see_it(
        env: dict[str, str], system: dict[str, str]) -> None:
    result = infrabot("simulate", "deploy", "--user", "sam", env=env).ok()
    shown = rows(result)
    run_id = shown["run"].split()[0]
    assert re.fullmatch(RUN_ID, run_id), result
    assert shown["run"] == f"{run_id} (workflow post-deploy)"
    assert (shown["status"], shown["reason"]) == ("succeeded", "ok")
    assert shown["see it"] == f"infrabot runs show {run_id}"
    assert re.fullmatch(r"\d+ ms, 12 token exchanges", shown["took"]), result
    assert "simulation summary" not in result.stdout
    shown_run = infrabot(*shown["see it"].split()[1:], env=env).ok()
    assert run_id in shown_run.stdout and "succeeded" in shown_run.stdout


def test_a_denied_run_is_exit_1_with_its_reason(env: dict[str, str],
                                                system: dict[str, str]) -> None:
    result = infrabot("simulate", "deploy", "--user", "alex", env=env)
    reason = ("agent:infrabot exchange for hand-off to agent:argocd: invalid_scope "
              "(scope_not_grantable)")
    shown = rows(result)
    assert result.returncode == 1, result
    assert (shown["status"], shown["reason"]) == ("denied", reason)
    run_id = shown["run"].split()[0]
    assert result.error_line() == f"run {run_id} ended denied: {reason}"


def test_the_see_it_command_names_the_state_directory_given(
        state: Path, system: dict[str, str]) -> None:
    result = infrabot("simulate", "deploy", "--user", "sam", "--state-dir", str(state),
                      env=clean_env()).ok()
    run_id = rows(result)["run"].split()[0]
    assert rows(result)["see it"] == f"infrabot runs show {run_id} --state-dir {state}"


def test_json_lists_each_event_with_its_run(env: dict[str, str],
                                            system: dict[str, str]) -> None:
    data = infrabot("simulate", "deploy", "--user", "sam", "--json", env=env).ok().json()
    assert isinstance(data, dict)
    [event] = data["events"]
    assert event["run_id"] == data["run_ids"][0]
    assert (event["http_status"], event["answer"], event["status"], event["reason"],
            event["workflow"]) == (202, "accepted", "succeeded", "ok", "post-deploy")


def test_a_scenario_that_expects_the_denial_exits_0(env: dict[str, str], system: dict[str, str],
                                                    tmp_path: Path) -> None:
    path = scenario(tmp_path, """\
events:
  - {user: sam, env: staging}
  - user: alex
    expect: {status: denied, reason: scope_not_grantable, workflow: post-deploy}
  - user: nobody
    expect: {webhook: {status: 403, reason: unknown_user}}
""")
    data = infrabot("simulate", "scenario", path, "--rate", "50", "--json",
                    env=env).ok().json()
    assert isinstance(data, dict)
    assert data["statuses"] == {"succeeded": 1, "denied": 1}
    assert data["refused"] == {"unknown_user": 1}


@pytest.mark.parametrize(("text", "expected"), [
    ("event: {user: alex}\n",
     (r"run (run-[0-9a-f]+) ended denied: agent:infrabot exchange for hand-off to agent:argocd: "
     r"invalid_scope \(scope_not_grantable\)")),
    ("event: {user: nobody}\n", r"event 1 refused at the receiver: 403 unknown_user"),
    ("event: {user: sam}\nexpect: {status: denied}\n",
     r"run (run-[0-9a-f]+) ended succeeded: ok \(expected denied\)"),
    ("event: {user: alex}\nexpect: {status: denied, reason: depth_exceeded}\n",
     r"run (run-[0-9a-f]+) ended denied: .* \(expected a reason containing 'depth_exceeded'\)"),
    ("event: {user: sam}\nexpect: {webhook: {status: 403, reason: user_disabled}}\n",
     r"event 1 accepted \(run run-[0-9a-f]+\), expected 403 user_disabled"),
    ("events: [{user: alex}, {user: alex}]\n",
     r"run (run-[0-9a-f]+) ended denied: .* \(and 1 more not as expected\)"),
])
def test_what_the_scenario_did_not_expect_is_exit_1_and_one_line(
        env: dict[str, str], system: dict[str, str], tmp_path: Path, text: str,
        expected: str) -> None:
    result = infrabot("simulate", "scenario", scenario(tmp_path, text), "--rate", "50", env=env)
    assert result.returncode == 1, result
    assert re.fullmatch(expected, result.error_line()), result


@pytest.mark.parametrize(("text", "expected"), [
    ("event: {user: sam}\nchanges: {max_depth: 2}\n",
     ("{path}: `changes:` needs a private copy of the workflows, which a running system does "
     "not have: run it with `infrabot check {path}`")),
    ("event: {user: sam}\nworkflow: rollback\n",
     ("{path}: `workflow:` needs a private copy of the workflows, which a running system does "
     "not have: run it with `infrabot check {path}`")),
    ("event: {user: sam, type: workflow_run}\n",
     ("{path}: events[0].type: simulate sends deployment events; for 'workflow_run' run "
     "`infrabot check {path}`")),
    ("event: {user: sam, creator: robin}\n",
     ("{path}: events[0] has unknown key `creator` (known: commit, count, env, environment, "
     "expect, pr, service, task, trigger, type, user); for more run `infrabot check {path}`")),
    ("event: {user: sam}\nexpect: {status: maybe}\n",
     "{path}: expect.status: Input should be 'succeeded', 'denied', 'failed' or 'expired'"),
])
def test_what_simulate_cannot_honour_is_refused_before_sending(tmp_path: Path, text: str,
                                                               expected: str) -> None:
    path = scenario(tmp_path, text)
    result = infrabot("simulate", "scenario", path,
                      env=clean_env(INFRABOT_STATE_DIR=str(tmp_path / "none")))
    assert result.returncode == 1, result
    assert result.error_line() == expected.format(path=path)


def test_a_check_scenario_says_which_expectations_only_check_checks(
        env: dict[str, str], system: dict[str, str]) -> None:
    path = Path(__file__).parents[2] / "workflows" / "scenarios" / "alex-lacks-deploy.yaml"
    result = infrabot("simulate", "scenario", str(path), env=env).ok()
    assert result.stderr == (f"note: {path}: expect.root, hops not checked here; "
                             f"`infrabot check {path}` checks them\n")
    assert rows(result)["status"] == "denied"


@pytest.mark.parametrize("command", [(), ("deploy",), ("scenario",), ("load",)])
def test_help_documents_the_exit_codes(command: tuple[str, ...]) -> None:
    text = infrabot("simulate", *command, "--help", env=clean_env()).ok().text
    assert "Exit codes: 0 every event went as expected" in text
    assert "2 bad usage" in text
    if command == ("load",):
        assert "1 a run failed or expired (the mix expects its bad events to be refused" in text
    else:
        assert "1 an event was refused at the receiver, or a run ended denied, failed" in text


def test_no_worker_is_said_after_a_few_seconds_instead_of_a_bare_timeout(
        tmp_path: Path) -> None:
    with flushed_redis(NO_WORKER_REDIS_DB) as url:
        state = tmp_path / "state"
        state.mkdir()
        env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_BROKER_URL=url,
                        INFRABOT_REDIS_URL=url)
        with serving(state, env):
            started = time.monotonic()
            result = infrabot("simulate", "deploy", "--user", "sam", "--timeout",
                              str(PICKUP_HINT_SECONDS + 3), env=env)
            took = time.monotonic() - started
    run_id = rows(result)["run"].split()[0]
    hint, error = result.stderr.strip().splitlines()
    assert hint == (f"no worker has picked up run {run_id} after {PICKUP_HINT_SECONDS:g} s (no "
                    "agent hop has started; the broker is redis): start one with `infrabot "
                    "worker`; still waiting")
    assert error == "Error: 1 run did not finish before the timeout"
    assert result.returncode == 1
    assert rows(result)["status"] == "unfinished: still running at the timeout"
    assert took < PICKUP_HINT_SECONDS + 3 + 10, result
