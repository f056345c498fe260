"""``infrabot runs list|show`` only read the run log, on every back end: run as a user runs
them (a fresh process, which has applied no schema), they apply no DDL to a PostgreSQL database
and write nothing; a database or file without the run log's tables is one line and exit 1,
and is left as it was found (no tables created in it)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.db._postgres import describe
from orchestrator.errors import Unavailable
from orchestrator.runs import RunStore
from tests._events import detail
from tests._postgres import fresh_schema, raw
from tests.cli._cli import Result, clean_env, infrabot
from tests.runs.conftest import Origin
from tests.stores.test_verify_postgres_read_only import catalog

COMMANDS = [("runs", "list"), ("runs", "show", "run-1"), ("runs", "show", "run-1", "--trace")]


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as where:
        yield where


@pytest.fixture
def run_log(url: str) -> str:
    """The database with one finished run in its run log."""
    with RunStore(url) as runs:
        runs.create("run-1", workflow="post-deploy", event=Origin())
        runs.add_event("run-1", None, detail("started", delivery="d-1"))
        runs.finish("run-1", "succeeded", "ok")
    return url


def runs(url: str, tmp_path: Path, *args: str) -> Result:
    env = clean_env(INFRABOT_DATABASE_URL=url, INFRABOT_STATE_DIR=str(tmp_path / "empty"))
    return infrabot(*args, env=env, cwd=tmp_path)


def test_runs_list_and_show_apply_no_schema(run_log: str, tmp_path: Path) -> None:
    before = catalog(run_log)
    listed = json.loads(runs(run_log, tmp_path, "runs", "list", "--json").ok().stdout)
    assert [run["run_id"] for run in listed] == ["run-1"]
    shown = runs(run_log, tmp_path, "runs", "show", "run-1", "--json", "--trace").ok().stdout
    assert json.loads(shown)["status"] == "succeeded"
    assert catalog(run_log) == before


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_database_without_the_run_log_is_one_line_and_left_empty(
        url: str, tmp_path: Path, command: tuple[str, ...]) -> None:
    result = runs(url, tmp_path, *command)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.error_line() == (f"{describe(url)} is not a usable run log: it has no runs "
                                   "tables")
    assert catalog(url) == []


@pytest.mark.parametrize("table", ["runs", "events"])
def test_a_dropped_run_log_table_is_one_line_and_not_re_created(
        run_log: str, tmp_path: Path, table: str) -> None:
    with raw(run_log) as conn:
        conn.execute(f"DROP TABLE {table}")
    before = catalog(run_log)
    assert runs(run_log, tmp_path, "runs", "list").error_line() == (
        f"{describe(run_log)} is not a usable run log: it has no runs tables")
    assert catalog(run_log) == before


def test_a_newer_run_log_is_one_line_and_left_as_it_is(run_log: str, tmp_path: Path) -> None:
    with raw(run_log) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE store = 'runs'")
    before = catalog(run_log)
    result = runs(run_log, tmp_path, "runs", "list")
    assert result.returncode == 1
    assert result.error_line() == "run log schema version 99 is newer than this code (3)"
    assert catalog(run_log) == before


def test_a_sqlite_file_without_the_run_log_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "runs.sqlite3"
    with sqlite3.connect(path) as conn:  # a database, but not a run log
        conn.execute("CREATE TABLE other (x INTEGER)")
    conn.close()
    before = path.read_bytes()
    for args in COMMANDS:
        result = infrabot(*args, "--state-dir", str(state), env=clean_env())
        assert result.returncode == 1, result
        assert result.error_line() == f"{path} is not a usable run log: it has no runs tables"
    assert path.read_bytes() == before


def test_the_store_the_commands_open_refuses_writes(run_log: str) -> None:
    """What the commands open: a read-only store, whose writes are refused before they are
    sent; the run log is left as it was."""
    before = catalog(run_log)
    with RunStore(run_log, read_only=True) as store:
        assert [run.run_id for run in store.list()] == ["run-1"]
        with pytest.raises(Unavailable) as caught:
            store.finish("run-1", "failed", "no")
        assert caught.value.reason == "run_log_unavailable"
    assert catalog(run_log) == before
