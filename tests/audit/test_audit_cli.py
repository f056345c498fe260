"""``infrabot audit query|verify|export`` through click's CliRunner, on a SQLite file (``--db``)
and on PostgreSQL (``INFRABOT_DATABASE_URL`` alone, the trusted keys given with ``--keys``)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from infrabot.cli._audit import audit
from orchestrator.audit import AuditKeys, AuditStore, Checkpointer, StoredRecord

T0 = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)


def _fill(target: Path | str, keys_dir: Path, make_record) -> None:
    """Three records, anchored by checkpoints signed with the audit key in ``keys_dir``."""
    keys = AuditKeys.open(keys_dir, "ES256", now=int(time.time()))
    with AuditStore(target, writer="svc") as store:
        checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                    every_records=2, every_seconds=60, clock=time.time)
        store.anchor_with(checkpointer)
        store.append(make_record(action="deploy:create", resource="service-x-prod"))
        store.append(make_record(time=T0 + timedelta(minutes=2)))
        store.append(
            make_record(
                time=T0 + timedelta(minutes=5),
                service="pagerduty",
                action="alert:raise",
                resource="pagerduty-service",
                decision="deny",
                reason="insufficient_scope",
                on_behalf_of="user:alex",
            )
        )
        checkpointer.close()


@pytest.fixture
def keys_dir(sqlite_path: Path) -> Path:
    return sqlite_path.parent / "keys" / "audit"


@pytest.fixture
def db(target: Path | str, keys_dir: Path, make_record,
       monkeypatch: pytest.MonkeyPatch) -> Path | str:
    """The filled trail; on PostgreSQL named by INFRABOT_DATABASE_URL, with no state dir."""
    _fill(target, keys_dir, make_record)
    if isinstance(target, str):
        monkeypatch.setenv("INFRABOT_DATABASE_URL", target)
    return target


@pytest.fixture
def sqlite_db(sqlite_path: Path, keys_dir: Path, make_record) -> Path:
    _fill(sqlite_path, keys_dir, make_record)
    return sqlite_path


def on(db: Path | str) -> list[str]:
    """The options that name ``db``: ``--db FILE``, or none (the environment names it)."""
    return ["--db", str(db)] if isinstance(db, Path) else []


def checked(db: Path | str, keys_dir: Path) -> list[str]:
    """``verify``'s options: the file and its state directory's keys, or (PostgreSQL, no state
    directory) the trusted keys file."""
    if isinstance(db, Path):
        return ["--db", str(db), "--state-dir", str(db.parent)]
    return ["--keys", str(keys_dir / "audit-keys.json")]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(audit, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_query_prints_the_audit_table(db: Path | str) -> None:
    code, out, _ = run("query", *on(db))
    assert code == 0
    for header in (
        "Timestamp",
        "Action",
        "Performed by",
        "On behalf of",
        "Resource",
        "Service",
        "Decision",
        "Reason",
    ):
        assert header in out
    assert "2025-07-18T16:10:03Z" in out and "service-x-prod" in out
    assert "pagerduty-service" in out and "insufficient_scope" in out


def test_query_filters_and_json(db: Path | str) -> None:
    code, out, _ = run("query", *on(db), "--user", "user:sam", "--json")
    assert code == 0
    records = [StoredRecord.model_validate(item) for item in json.loads(out)]
    assert [r.action for r in records] == ["deploy:create", "metrics:query"]


@pytest.mark.parametrize(
    ("args", "actions"),
    [
        (["--decision", "deny"], ["alert:raise"]),
        (["--service", "datadog", "--action", "metrics:query"], ["metrics:query"]),
        (["--agent", "agent:infrabot", "--limit", "1"], ["deploy:create"]),
        (["--run", "run-1", "--since", "2025-07-18T16:11:00Z"], ["metrics:query", "alert:raise"]),
        (["--until", "2025-07-18T18:11:00+02:00"], ["deploy:create"]),
        (["--since", "2025-07-18T16:11"], ["metrics:query", "alert:raise"]),  # naive: UTC
        (["--until", "2025-07-18"], []),
    ],
)
def test_query_options(db: Path | str, args: list[str], actions: list[str]) -> None:
    code, out, _ = run("query", *on(db), "--json", *args)
    assert code == 0
    assert [item["action"] for item in json.loads(out)] == actions


def test_query_uses_the_settings_state_dir(sqlite_db: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRABOT_STATE_DIR", str(sqlite_db.parent))
    code, out, _ = run("query", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_state_dir_option_overrides_the_environment(
    sqlite_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFRABOT_STATE_DIR", str(tmp_path / "elsewhere"))
    code, out, _ = run("verify", "--state-dir", str(sqlite_db.parent))
    assert code == 0
    assert out.splitlines()[-1] == ("audit trail intact and anchored: 3 records from 1 writer, "
                                    "2 checkpoints")


def test_bad_since_is_one_clear_line(db: Path | str) -> None:
    code, out, err = run("query", *on(db), "--since", "yesterday")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "Error: --since: not an ISO 8601 time: 'yesterday' (e.g. 2025-07-18T16:10:03Z)"
    ]


@pytest.mark.parametrize("command", ["query", "verify", "export"])
def test_missing_database_is_one_clear_line(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope" / "audit.sqlite3"
    code, _, err = run(command, "--db", str(missing))
    assert code == (4 if command == "verify" else 1)  # verify: 1 means tampering
    assert err.splitlines() == [f"Error: no audit database at {missing}"]
    assert not missing.parent.exists()


def test_not_a_database_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    path.write_bytes(b"garbage" * 200)
    code, _, err = run("verify", "--db", str(path))
    assert code == 4
    assert len(err.splitlines()) == 1 and "not a usable audit database" in err


def test_verify_intact(db: Path | str, keys_dir: Path) -> None:
    code, out, _ = run("verify", *checked(db, keys_dir))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("writer svc: 3 records; seq 1-3 anchored by checkpoint 2 (")
    assert lines[1] == "audit trail intact and anchored: 3 records from 1 writer, 2 checkpoints"


def test_verify_after_tampering_names_the_kind(db: Path | str, keys_dir: Path, raw_db) -> None:
    with raw_db(db) as conn:
        conn.execute("UPDATE records SET decision = 'allow' WHERE seq = 3")
        conn.execute("DELETE FROM records WHERE seq = 1")
    code, out, err = run("verify", *checked(db, keys_dir))
    assert code == 1
    assert out.splitlines()[1:] == [
        "deleted: writer svc seq 1: seq 1 missing before seq 2",
        "edited: writer svc seq 3 (record id 3): hash does not match the record content",
    ]
    assert "2 problems" in err


def test_export_jsonl_to_stdout(db: Path | str) -> None:
    code, out, _ = run("export", *on(db))
    assert code == 0
    records = [StoredRecord.model_validate_json(line) for line in out.splitlines()]
    assert [r.seq for r in records] == [1, 2, 3]


def test_export_ocsf_to_a_file(db: Path | str, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    code, out, _ = run(
        "export", *on(db), "--format", "ocsf", "--decision", "deny", "--output", str(output)
    )
    assert (code, out) == (0, "")
    (event,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert (event["class_uid"], event["status"], event["actor"]["user"]["uid"]) == (
        6003,
        "Failure",
        "user:alex",
    )


@pytest.mark.parametrize("command", ["query", "verify", "export"])
def test_help_shows_an_example(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    assert f"infrabot audit {command}" in out and "Example" in out
