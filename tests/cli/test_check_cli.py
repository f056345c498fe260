"""``infrabot check`` as a command: bad scenario files and unknown names are one line naming the
file and line, exit 2; ``--help`` has an example; and one run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# pytest's prepend import mode puts tests/ on sys.path, where tests/mock_services (no __init__)
# would shadow the real `mock_services` (installed editable, found after sys.path).
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

import pytest
from click.testing import CliRunner

from infrabot.cli._check import check

GOOD_EVENT = "name: s\nevent: {user: sam, environment: prod}\n"
BAD_FILES = {
    "not YAML": ("name: s\nevent: {user: sam, environment: prod\n", 3, "not valid YAML"),
    "unknown key": (GOOD_EVENT + "expect:\n  status: denied\n  colour: red\n", 5,
                    "expect.colour: Extra inputs are not permitted"),
    "bad verdict": (GOOD_EVENT + "expect:\n  status: denied\n  hops:\n    agent:argocd:\n"
                    "      - {step: aws.ec2.create_tags, exchange: allow}\n"
                    "      - {step: hand_off, exchange: dny}\n", 8,
                    ("expect.hops.agent:argocd.1.exchange: Input should be 'allow', 'deny' or "
                    "'skipped'")),
    "not_run typo": (GOOD_EVENT + "expect:\n  status: denied\n  hops:\n    agent:argocd: none\n",
                     6, "must be not_run or a list of steps"),
    "unknown action": (GOOD_EVENT + "expect:\n  status: denied\n  hops:\n    agent:argocd:\n"
                       "      - {step: github.nothing, exchange: allow}\n", 7,
                       "unknown action 'github.nothing'"),
    "unknown agent": (GOOD_EVENT + "expect:\n  status: denied\n  hops:\n    agent:nobody: "
                      "not_run\n", 6, "agent:nobody is not an agent in the directory"),
    "unknown workflow": (GOOD_EVENT + "workflow: nope\nexpect: {status: denied}\n", 3,
                         "no workflow named 'nope'"),
    "bad scope": (GOOD_EVENT + "changes:\n  users:\n    user:sam:\n      permissions: [x:y]\n"
                  "expect: {status: denied}\n", 6, "'x:y' is not a scope"),
    "run without status": (GOOD_EVENT + "expect: {webhook: {status: 202}}\n", 3,
                           "expect.status is required"),
    "run expectations on a refused webhook": (
        GOOD_EVENT + "expect:\n  webhook: {status: 403}\n  status: denied\n", 3,
        "expectations about a run need an accepted webhook"),
    "missing event": ("name: s\nexpect: {status: denied}\n", 1, "event is required"),
    "bad revocation moment": (GOOD_EVENT + "changes: {revoke: {after: later}}\n"
                              "expect: {status: denied}\n", 3, "changes.revoke.after"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_scenario_file_is_one_line_naming_file_and_line_exit_2(tmp_path: Path,
                                                                   case: str) -> None:
    text, line, message = BAD_FILES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(check, [str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith(f"Error: {path}:{line}: "), error
    assert message in error
    assert "Traceback" not in result.output


def test_one_bad_file_in_the_folder_stops_the_whole_check(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(GOOD_EVENT + "expect: {status: succeeded}\n")
    (tmp_path / "b-bad.yaml").write_text(GOOD_EVENT + "expect: {status: maybe}\n")
    result = CliRunner().invoke(check, ["--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path / 'b-bad.yaml'}:3: expect.status:" in result.stderr


def test_unknown_scenario_name_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(check, ["no-such-scenario", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: no scenario named 'no-such-scenario' in {tmp_path}"


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(check, ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout and "infrabot check" in result.stdout
    for option in ("--json", "--junit", "--dir", "--jobs", "--keep", "--state-dir"):
        assert option in result.stdout


def test_as_a_user_runs_it_a_named_shipped_scenario(tmp_path: Path) -> None:
    """A process of its own, no INFRABOT_* from this one: the disabled account's deploy is refused
    at the webhook, as the shipped scenario says."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "from infrabot.cli._check import check; check()",
         "former-employee", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] is True
    (scenario,) = report["scenarios"]
    assert scenario["name"] == "former-employee"
    assert [(c["name"], c["passed"], c["actual"]) for c in scenario["checks"]] == \
        [("webhook", True, "403 user_disabled")]
    assert "Traceback" not in done.stderr
