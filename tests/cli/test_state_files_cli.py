"""Damaged or missing state files, as a user meets them: ``runs list|show`` on a run log with
random bytes flipped answers or fails with one line naming the file, never a traceback; and a
command that only reads never creates a missing state directory or database (a mistyped
``--state-dir`` is one line: no such state directory)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from _cli import clean_env, infrabot, run_all

from orchestrator.runs import RunStore
from tests._events import detail
from tests.runs.conftest import Origin

SEEDS = range(3)
COPIES_PER_SEED = 6


@pytest.fixture(scope="module")
def run_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run log of six runs, hop by hop, some finished."""
    path = tmp_path_factory.mktemp("runlog") / "runs.sqlite3"
    with RunStore(path) as store:
        for i in range(6):
            run_id = f"run-{i:04x}"
            store.create(run_id, workflow="post-deploy", event=Origin())
            store.add_event(run_id, None, detail("started", event="deployment", user="user:sam"))
            store.mark_running(run_id)
            store.add_event(run_id, "agent:infrabot", detail(
                "exchanged", requested="urn:infra:repo:read", granted="x", ms=3))
            if i % 2:
                store.finish(run_id, "succeeded", "ok", agent="agent:cleanup")
    return path


def _damaged_copies(original: Path, root: Path, seed: int) -> list[Path]:
    data = original.read_bytes()
    rng = random.Random(seed)
    copies = []
    for attempt in range(COPIES_PER_SEED):
        damaged = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
        state = root / f"state-{seed}-{attempt}"
        state.mkdir(parents=True)
        (state / "runs.sqlite3").write_bytes(bytes(damaged))
        copies.append(state)
    return copies


@pytest.mark.parametrize("seed", SEEDS)
def test_flipped_bytes_in_the_run_log_give_one_line_or_an_answer(
        run_log: Path, tmp_path: Path, seed: int) -> None:
    """The run log has no checksums: a flipped byte inside a value can change what it says
    without SQLite noticing. What is required: a clean answer (valid JSON of runs) or one line
    naming the file, with exit 1; never a traceback."""
    states = _damaged_copies(run_log, tmp_path, seed)
    calls = [(args + ("--state-dir", str(state)), clean_env())
             for state in states
             for args in (("runs", "list"), ("runs", "show", "run-0001", "--json"))]
    for (args, _), result in zip(calls, run_all(calls), strict=True):
        result.no_traceback()
        copy = Path(args[-1]) / "runs.sqlite3"
        if result.returncode == 0:
            if "--json" in args:
                assert isinstance(json.loads(result.stdout), (list, dict)), result
            continue
        assert result.returncode == 1, result
        line = result.error_line()
        assert line.startswith(f"{copy}: damaged run log: ") or line == "no run 'run-0001'", \
            result


def test_an_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "runs.sqlite3").write_bytes(b"this is not SQLite at all" * 100)
    for args in (("runs", "list"), ("runs", "show", "run-1")):
        result = infrabot(*args, "--state-dir", str(state), env=clean_env())
        assert result.error_line() == (f"{state / 'runs.sqlite3'}: damaged run log: file is "
                                       "not a database"), result


def test_a_run_that_does_not_validate_is_one_line(run_log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    copy = state / "runs.sqlite3"
    copy.write_bytes(run_log.read_bytes())
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE runs SET status = 'lost' WHERE run_id = 'run-0001'")
        conn.execute("UPDATE events SET detail = '{not json' WHERE run_id = 'run-0002'")
    conn.close()
    show = infrabot("runs", "show", "run-0001", "--state-dir", str(state), env=clean_env())
    assert show.error_line().startswith(f"{copy}: damaged run log: status: Input should be ")
    show = infrabot("runs", "show", "run-0002", "--state-dir", str(state), env=clean_env())
    assert show.error_line().startswith(f"{copy}: damaged run log: Expecting property name ")


def test_an_event_detail_that_is_not_its_kind_s_model_is_one_line(run_log: Path,
                                                                   tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    copy = state / "runs.sqlite3"
    copy.write_bytes(run_log.read_bytes())
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE events SET detail = json_remove(detail, '$.ms') "
                     "WHERE run_id = 'run-0002' AND kind = 'exchanged'")
    conn.close()
    for args in (("runs", "show", "run-0002"), ("runs", "list")):
        result = infrabot(*args, "--state-dir", str(state), env=clean_env())
        assert result.error_line() == (
            f"{copy}: damaged run log: run run-0002 event 2: exchanged event detail does not "
            "validate: ms: Field required"), result


READ_ONLY = {
    "runs list": (("runs", "list"), 1),
    "runs show": (("runs", "show", "run-1"), 1),
    "runs list --user": (("runs", "list", "--user", "sam"), 1),
    "audit query": (("audit", "query"), 1),
    "audit export": (("audit", "export"), 1),
    "audit verify": (("audit", "verify"), 4),
    "token inspect": (("token", "inspect", "a.b.c"), 1),
    "revoke": (("revoke", "--user", "sam"), 1),
    "simulate deploy": (("simulate", "deploy", "--user", "sam"), 1),
}


@pytest.mark.parametrize("flag", [True, False], ids=["--state-dir", "INFRABOT_STATE_DIR"])
def test_a_mistyped_state_directory_is_one_line_and_is_not_created(tmp_path: Path,
                                                                   flag: bool) -> None:
    missing = tmp_path / "typo" / "state"
    calls = [((*args, "--state-dir", str(missing)) if flag else args,
              clean_env() if flag else clean_env(INFRABOT_STATE_DIR=str(missing)))
             for args, _ in READ_ONLY.values()]
    for (name, (_, code)), result in zip(READ_ONLY.items(), run_all(calls), strict=True):
        assert result.returncode == code, (name, result)
        assert result.error_line() == (
            f"no such state directory: {missing} (where `infrabot serve` or `infrabot demo` "
            "ran; --state-dir or INFRABOT_STATE_DIR)"), (name, result)
    assert not (tmp_path / "typo").exists()


def test_workflows_need_no_state_directory_and_create_none(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    infrabot("workflows", "list", "--state-dir", str(missing), env=clean_env()).ok()
    result = infrabot("workflows", "check", "post-deploy", "--user", "sam", env=clean_env(
        INFRABOT_STATE_DIR=str(missing)))
    assert result.returncode == 0, result
    assert not missing.exists()


def test_reading_an_empty_state_directory_creates_no_database(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state))
    runs = infrabot("runs", "list", env=env)
    assert runs.error_line() == f"no runs yet: {state / 'runs.sqlite3'} does not exist"
    query = infrabot("audit", "query", env=env)
    assert query.error_line() == f"no audit database at {state / 'audit.sqlite3'}"
    inspect = infrabot("token", "inspect", "a.b.c", env=env)
    assert inspect.error_line() == (f"no signing keys in {state / 'keys' / 'signing'}: no "
                                    "authorization server has run from this state directory, "
                                    "so it issued no token")
    assert sorted(p.name for p in state.iterdir()) == []


def test_runs_only_read_the_run_log(run_log: Path, tmp_path: Path) -> None:
    """``runs list`` and ``runs show`` open the file read-only: it is left byte for byte, and a
    reader without write access to it gets the same answers."""
    state = tmp_path / "state"
    state.mkdir()
    copy = state / "runs.sqlite3"
    copy.write_bytes(run_log.read_bytes())
    copy.chmod(0o444)
    before = copy.read_bytes()
    listed = infrabot("runs", "list", "--json", "--state-dir", str(state), env=clean_env()).ok()
    assert len(json.loads(listed.stdout)) == 6
    shown = infrabot("runs", "show", "run-0001", "--json", "--state-dir", str(state),
                     env=clean_env()).ok()
    assert json.loads(shown.stdout)["status"] == "succeeded"
    assert copy.read_bytes() == before
