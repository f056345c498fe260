"""Every option that names a file to write (``check --junit``, ``demo --report``, ``audit export
-o``, ``audit keys -o``) says in one line why the file cannot be written, naming it and the OS's
reason, with the command's exit status for it; never a traceback. ``check`` and ``demo`` say it
before any scenario or demo runs, ``audit keys`` before a rotation. Missing folders are made."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from _cli import clean_env, infrabot
from click.testing import CliRunner

import infrabot.demo as demo_module
import infrabot.demo._report as report_module
import infrabot.scenarios as scenarios_module
from infrabot.cli._check import check
from infrabot.cli._common import CommandError, check_writable
from infrabot.cli._demo import demo
from orchestrator.audit import AuditStore

NOT_A_DIRECTORY = "Not a directory"


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path whose parent is a regular file: it can never be written."""
    (tmp_path / "afile").write_text("a file where a folder would be\n")
    return tmp_path / "afile"


def test_check_junit_under_a_file_is_one_line_exit_2_before_any_scenario(
        blocked: Path, tmp_path: Path) -> None:
    junit = blocked / "x.xml"
    result = infrabot("check", "happy-path", "--junit", str(junit),
                      "--state-dir", str(tmp_path / "state"), env=clean_env())
    assert result.returncode == 2, result
    assert result.error_line() == f"cannot write the JUnit XML {junit}: {NOT_A_DIRECTORY}"
    assert result.stderr.count("\n") == 1 and result.stdout == ""  # no scenario ran first
    assert not (tmp_path / "state" / "check").exists()


def test_check_junit_in_a_missing_folder_is_made(tmp_path: Path) -> None:
    junit = tmp_path / "reports" / "ci" / "check.xml"
    result = infrabot("check", "happy-path", "--junit", str(junit),
                      "--state-dir", str(tmp_path / "state"), env=clean_env())
    assert result.returncode == 0, result
    assert junit.read_text().startswith("<?xml")


def test_check_junit_that_fails_after_the_run_is_one_line_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writable before the run, not after it (its folder became a file meanwhile)."""
    folder = tmp_path / "out"

    def run_scenarios(*_: object, **__: object) -> list[object]:
        folder.rmdir()
        folder.write_text("replaced while the scenarios ran\n")
        return []

    monkeypatch.setattr(scenarios_module, "run_scenarios", run_scenarios)
    result = CliRunner().invoke(check, ["happy-path", "--junit", str(folder / "x.xml"),
                                        "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    assert result.output == (f"Error: cannot write the JUnit XML {folder / 'x.xml'}: "
                             f"{NOT_A_DIRECTORY}\n")


def test_demo_report_under_a_file_is_one_line_exit_1(blocked: Path, tmp_path: Path) -> None:
    report = blocked / "r.html"
    result = infrabot("demo", "--report", str(report), "--state-dir", str(tmp_path / "state"),
                      env=clean_env())
    assert result.returncode == 1, result
    assert result.error_line() == f"cannot write the report {report}: {NOT_A_DIRECTORY}"
    assert result.stdout == ""


def test_demo_report_that_fails_after_the_run_is_one_line_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write_report(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("INFRABOT_LOG_LEVEL", "WARNING")  # the demo leaves logging as it is
    monkeypatch.setattr(demo_module, "run_demo", lambda *_, **__: object())
    monkeypatch.setattr(report_module, "write_report", write_report)
    report = tmp_path / "r.html"
    result = CliRunner().invoke(demo, ["--report", str(report),
                                       "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: cannot write the report {report}: No space left on device\n"
    assert not report.exists()  # the check made no file of its own


@pytest.fixture
def audit_state(tmp_path: Path) -> Path:
    """A state directory with an (empty) audit database and an audit key."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with AuditStore(state / "audit.sqlite3"):
        pass
    infrabot("audit", "keys", "--rotate", "--state-dir", str(state), env=clean_env()).ok()
    return state


def test_audit_export_to_a_path_under_a_file_is_one_line_exit_1(audit_state: Path,
                                                                 blocked: Path) -> None:
    output = blocked / "x.jsonl"
    result = infrabot("audit", "export", "-o", str(output), "--state-dir", str(audit_state),
                      env=clean_env())
    assert result.returncode == 1, result
    assert result.error_line() == f"cannot write the export {output}: {NOT_A_DIRECTORY}"
    assert result.stdout == ""


def test_audit_export_to_a_missing_folder_makes_it(audit_state: Path, tmp_path: Path) -> None:
    output = tmp_path / "exports" / "audit.jsonl"
    infrabot("audit", "export", "-o", str(output), "--state-dir", str(audit_state),
             env=clean_env()).ok()
    assert output.read_text() == ""  # an empty trail


def test_audit_keys_to_a_path_under_a_file_is_one_line_exit_1_and_rotates_nothing(
        audit_state: Path, blocked: Path) -> None:
    public = audit_state / "keys" / "audit" / "audit-keys.json"
    before = public.read_text()
    output = blocked / "k.json"
    for args in ((), ("--rotate",)):
        result = infrabot("audit", "keys", *args, "-o", str(output),
                          "--state-dir", str(audit_state), env=clean_env())
        assert result.returncode == 1, result
        assert result.error_line() == f"cannot write the public keys {output}: {NOT_A_DIRECTORY}"
        assert result.stdout == ""
    assert public.read_text() == before  # said before rotating, so no key was rotated


def test_audit_keys_to_a_file_writes_the_public_keys(audit_state: Path, tmp_path: Path) -> None:
    output = tmp_path / "saved" / "k.json"
    infrabot("audit", "keys", "-o", str(output), "--state-dir", str(audit_state),
             env=clean_env()).ok()
    document = json.loads(output.read_text())
    assert [key["kty"] for key in document["keys"]] and "d" not in document["keys"][0]


def test_check_writable_keeps_a_link_and_makes_nothing(tmp_path: Path) -> None:
    """A link to a file not made yet stays a link, and no file appears before the write."""
    link = tmp_path / "link.xml"
    link.symlink_to(tmp_path / "target.xml")
    check_writable(link, "the JUnit report")
    assert link.is_symlink() and not (tmp_path / "target.xml").exists()


def test_check_writable_does_not_open_a_pipe(tmp_path: Path) -> None:
    """A named pipe is not opened (that would block, or end its reader's stream)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    check_writable(pipe, "the export")  # returns at once: nothing opened it


def test_check_writable_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"cannot write the export .*: Is a directory"):
        check_writable(tmp_path, "the export")
