"""Every command that reads the audit trail or the runs, run as a user runs it (a subprocess,
a clean environment) with only ``INFRABOT_DATABASE_URL`` naming the stores and a state
directory that holds none of them; and the database URL's bad input, one line each."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.audit import AuditStore
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.runs import RunStore
from tests._events import detail
from tests._postgres import fresh_schema
from tests.audit.conftest import anchored_trail, record
from tests.cli._cli import clean_env, infrabot, serving
from tests.runs.conftest import Origin


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as where:
        yield where


@pytest.fixture
def env(url: str, tmp_path: Path) -> dict[str, str]:
    return clean_env(INFRABOT_DATABASE_URL=url, INFRABOT_STATE_DIR=str(tmp_path / "empty"))


def _no_store_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.suffix.startswith(".sqlite3")], \
        "a store was written on disk instead of the database"


def test_audit_and_runs_commands_read_the_database(url: str, env: dict[str, str],
                                                   tmp_path: Path) -> None:
    anchored_trail(url, tmp_path / "keys", records=3, every=2)
    with RunStore(url) as runs:
        runs.create("run-1", workflow="post-deploy", event=Origin())
        runs.add_event("run-1", None, detail("started", delivery="d-1"))
        runs.finish("run-1", "succeeded", "ok")
    queried = infrabot("audit", "query", "--json", env=env, cwd=tmp_path).ok().json()
    assert [item["resource"] for item in queried] == ["r-0", "r-1", "r-2"]
    verified = infrabot("audit", "verify", "--keys", str(tmp_path / "keys" / PUBLIC_FILE),
                        env=env, cwd=tmp_path).ok().stdout.splitlines()
    assert verified[0].startswith("writer svc: 3 records; seq 1-3 anchored by checkpoint 2 (")
    assert verified[1] == ("audit trail intact and anchored: 3 records from 1 writer, "
                           "2 checkpoints")
    exported = infrabot("audit", "export", "--format", "ocsf", env=env, cwd=tmp_path).ok()
    assert len(exported.stdout.splitlines()) == 3
    listed = infrabot("runs", "list", "--json", env=env, cwd=tmp_path).ok().json()
    assert [(r["run_id"], r["status"]) for r in listed] == [("run-1", "succeeded")]
    shown = infrabot("runs", "show", "run-1", "--json", env=env, cwd=tmp_path).ok().json()
    assert [e["kind"] for e in shown["events"]] == ["started", "finished"]
    _no_store_files(tmp_path)


def test_check_waits_for_its_runs_in_the_database(url: str, env: dict[str, str],
                                                  tmp_path: Path) -> None:
    done = infrabot("check", "happy-path", "rollback", "--json", env=env, cwd=tmp_path,
                    timeout=180).ok().json()
    assert [(r["name"], r["passed"]) for r in done["scenarios"]] == [("happy-path", True),
                                                                    ("rollback", True)]
    with RunStore(url) as runs:
        assert {run.status for run in runs.list()} == {"succeeded"}
    _no_store_files(tmp_path)


def test_simulate_on_another_host_waits_for_its_run_in_the_database(
        url: str, env: dict[str, str], tmp_path: Path) -> None:
    """serve keeps its keys in its own state directory; the simulator has none of its own and
    reaches the receiver by its configured address and the runs through the database."""
    served = tmp_path / "serve-host"
    served.mkdir()
    with serving(served, clean_env(INFRABOT_DATABASE_URL=url,
                                   INFRABOT_STATE_DIR=str(served))) as urls:
        port = urls["webhooks"].rsplit(":", 1)[1]
        secret = (served / "webhook_secret").read_text().strip()  # given to the sender
        simulator = {**env, "INFRABOT_WEBHOOKS_PORT": port, "INFRABOT_WEBHOOK_SECRET": secret}
        summary = infrabot("simulate", "deploy", "--user", "sam", "--json", env=simulator,
                           cwd=tmp_path, timeout=90).ok().json()
        assert summary["statuses"] == {"succeeded": 1}
        trusted = served / "keys" / "audit" / PUBLIC_FILE  # exported from serve's host
        assert "intact and anchored" in infrabot("audit", "verify", "--keys", str(trusted),
                                                 env=simulator, cwd=tmp_path).ok().stdout
    _no_store_files(tmp_path)


@pytest.mark.parametrize("value", [
    "mysql://root@127.0.0.1/db", "postgresql://127.0.0.1:5432", "postgresql://h:99999/db",
    "sqlite://relative/path", "not a url"])
@pytest.mark.parametrize("command", [("runs", "list"), ("audit", "verify"),
                                     ("serve", "--port-base", "0")])
def test_a_malformed_database_url_is_one_line_naming_the_variable(
        value: str, command: tuple[str, ...], tmp_path: Path) -> None:
    env = clean_env(INFRABOT_DATABASE_URL=value, INFRABOT_STATE_DIR=str(tmp_path / "s"))
    line = infrabot(*command, env=env, cwd=tmp_path).error_line()
    assert line.startswith("bad setting INFRABOT_DATABASE_URL: must be "
                           "postgresql://user@host:port/db or sqlite:///directory")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# How the line names the setting: the run log by it; the audit trail (which serve opens first) by
# it in place of the unset INFRABOT_AUTH_DATABASE_URL.
AS_AUTH = "(INFRABOT_DATABASE_URL, in place of INFRABOT_AUTH_DATABASE_URL, which is unset)"


@pytest.mark.parametrize(("command", "setting"), [
    (("runs", "list"), "(INFRABOT_DATABASE_URL)"), (("audit", "query"), AS_AUTH),
    (("simulate", "deploy", "--user", "sam"), "(INFRABOT_DATABASE_URL)"),
    (("serve", "--port-base", "0"), AS_AUTH)])
def test_an_unreachable_database_is_one_line(command: tuple[str, ...], setting: str,
                                             tmp_path: Path) -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{_free_port()}/ib_down"
    env = clean_env(INFRABOT_DATABASE_URL=url, INFRABOT_STATE_DIR=str(tmp_path / "s"),
                    INFRABOT_WEBHOOK_SECRET="a-sender-secret-of-32-characters-or-more")
    line = infrabot(*command, env=env, cwd=tmp_path).error_line()
    assert "cannot reach the database at postgresql://postgres@127.0.0.1:" in line
    assert setting in line and "s3cret" not in line


@pytest.mark.parametrize("slashes", ["//", "///"])  # sqlite:///abs, or SQLAlchemy's sqlite:////abs
def test_sqlite_url_puts_both_stores_in_its_directory(tmp_path: Path, slashes: str) -> None:
    stores = tmp_path / "stores"
    env = clean_env(INFRABOT_DATABASE_URL=f"sqlite:{slashes}{stores}",
                    INFRABOT_STATE_DIR=str(tmp_path / "state"))
    with AuditStore(stores / "audit.sqlite3") as audit:
        audit.append(record())
    assert json.loads(infrabot("audit", "query", "--json", env=env, cwd=tmp_path).ok().stdout)
    assert infrabot("runs", "list", env=env, cwd=tmp_path).error_line() == \
        f"no runs yet: {stores / 'runs.sqlite3'} does not exist"
