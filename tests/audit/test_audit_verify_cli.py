"""``infrabot audit verify`` with checkpoints, ``audit keys``, and damaged files: every outcome
has its own exit code, every failure is one line."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from infrabot.cli._audit import audit
from infrabot.demo._audit_attack import recompute_from
from orchestrator.audit import AuditKeys, AuditStore
from tests.audit.conftest import anchored_trail


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(audit, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def state(tmp_path: Path, make_record) -> Path:
    """A state directory: 10 records of writer svc, checkpoints every 4 and at shutdown, and
    then 2 more records of writer late that no checkpoint covers."""
    state = tmp_path / "state"
    anchored_trail(state / "audit.sqlite3", state / "keys" / "audit", records=10)
    with AuditStore(state / "audit.sqlite3", writer="late") as store:
        for i in range(2):
            store.append(make_record(resource=f"late-{i}"))
    return state


def test_unanchored_records_are_said_plainly_with_exit_3(state: Path) -> None:
    code, out, _ = run("verify", "--state-dir", str(state))
    lines = out.splitlines()
    assert code == 3
    assert lines[0] == "writer late: 2 records; seq 1-2 unanchored (no checkpoint)"
    assert lines[1].startswith("writer svc: 10 records; seq 1-10 anchored by checkpoint 3 (")
    assert lines[2] == ("audit trail intact, but 2 records are unanchored (after their writer's "
                        "last checkpoint, nothing signed vouches for them): 12 records from 2 "
                        "writers, 3 checkpoints")


def test_recomputed_chain_fails_with_exit_1(state: Path, raw_db) -> None:
    with raw_db(state / "audit.sqlite3") as conn:
        recompute_from(conn, "svc", 7, decision="deny", reason="forged")
    code, out, err = run("verify", "--state-dir", str(state))
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines()[2:]] == ["rewritten"] * 2
    assert "writer svc seq 8: checkpoint 2: signed head hash" in out
    assert err == "audit trail damaged: 2 problems (12 records from 2 writers, 3 checkpoints)\n"


def test_keys_come_from_the_file_given_not_the_database(state: Path, tmp_path: Path) -> None:
    code, out, _ = run("keys", "--state-dir", str(state), "-o", str(tmp_path / "k.json"))
    assert code == 0 and out == ""
    shutil.rmtree(state / "keys")
    other = tmp_path / "other"
    code, _, err = run("verify", "--db", str(state / "audit.sqlite3"), "--state-dir", str(other))
    assert code == 4
    assert err.splitlines() == [(f"Error: no trusted audit keys at {other}/keys/audit/"
                                "audit-keys.json: pass --keys FILE (saved from `infrabot audit "
                                "keys` where the writers run)")]
    code, _, _ = run("verify", "--db", str(state / "audit.sqlite3"), "--state-dir", str(other),
                     "--keys", str(tmp_path / "k.json"))
    assert code == 3


def test_a_stranger_key_file_makes_every_checkpoint_forged(state: Path, tmp_path: Path) -> None:
    stranger = AuditKeys.open(tmp_path / "stranger", "ES256", now=int(time.time()))
    code, out, _ = run("verify", "--state-dir", str(state), "--keys",
                       str(stranger.public_file))
    assert code == 1 and out.count("signed by an unknown audit key") == 3


@pytest.mark.parametrize("content", [b"", b"{", b'{"keys": 1}', b'{"keys": []}', b"\xff\xfe"])
def test_bad_key_file_is_one_line_exit_4(state: Path, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    code, out, err = run("verify", "--state-dir", str(state), "--keys", str(path))
    assert (code, out) == (4, "")
    assert len(err.splitlines()) == 1 and str(path) in err


def test_keys_export_is_public_only_and_rotate_keeps_the_old_key(state: Path) -> None:
    code, out, _ = run("keys", "--state-dir", str(state))
    (before,) = json.loads(out)["keys"]
    assert code == 0 and not {"d", "p", "q"} & set(before)
    code, out, err = run("keys", "--state-dir", str(state), "--rotate")
    old, new = json.loads(out)["keys"]
    assert code == 0 and err.startswith(f"audit key rotated: {new['kid']}")
    assert old["kid"] == before["kid"] and "retired_at" in old and "retired_at" not in new
    code, _, _ = run("verify", "--state-dir", str(state))
    assert code == 3  # checkpoints of the retired key still verify


def test_keys_without_a_key_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("keys", "--state-dir", str(tmp_path / "empty"))
    assert code == 1 and len(err.splitlines()) == 1 and "no audit key file at" in err


def test_verify_help_documents_the_exit_codes() -> None:
    code, out, _ = run("verify", "--help")
    assert code == 0
    for line in ("0  intact, and every record is anchored", "1  tampering found",
                 "2  bad usage", "3  intact, but some records", "4  nothing could be checked"):
        assert line in out


def test_verify_does_not_change_the_file(state: Path) -> None:
    db = state / "audit.sqlite3"
    before = db.read_bytes()
    run("verify", "--state-dir", str(state))
    assert db.read_bytes() == before


@pytest.mark.parametrize("command", ["verify", "query", "export"])
def test_a_file_without_audit_tables_is_one_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "other.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
    code, _, err = run(command, "--db", str(path), "--state-dir", str(tmp_path))
    assert code == (4 if command == "verify" else 1)
    assert err == f"Error: {path} is not a usable audit database: it has no audit tables\n"


def _snapshot(path: Path) -> object:
    """Everything verify reads, straight from SQLite (raises if SQLite cannot read it)."""
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return [conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("records", "writers", "checkpoints")]


@pytest.mark.parametrize("seed", range(6))
def test_flipped_bytes_give_one_line_or_a_correct_answer(state: Path, tmp_path: Path,
                                                         seed: int) -> None:
    """Random bytes of a copy flipped: verify, query and export each fail with one clean line,
    or answer; verify may call the copy intact only if what it reads is the original data."""
    original = state / "audit.sqlite3"
    expected = _snapshot(original)
    data = original.read_bytes()
    rng = random.Random(seed)
    for attempt in range(12):
        damaged = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
        copy = tmp_path / f"copy-{seed}-{attempt}.sqlite3"
        copy.write_bytes(bytes(damaged))
        code, out, err = run("verify", "--db", str(copy), "--state-dir", str(state))
        assert code in (0, 1, 3, 4), (code, out, err)
        if code == 4:
            assert out == "" and len(err.splitlines()) == 1 and str(copy) in err
        elif code == 3:  # the original answer: only the never-anchored writer "late"
            assert _snapshot(copy) == expected, "damaged data called intact"
        else:
            assert code == 1 and "audit trail damaged" in err
        for command in ("query", "export"):
            code, out, err = run(command, "--db", str(copy), "--state-dir", str(state))
            assert code in (0, 1), (command, code, err)
            if code == 1:
                assert len(err.splitlines()) == 1 and err.startswith(f"Error: {copy}")


def test_a_bad_setting_is_exit_4_not_tampering(state: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    monkeypatch.setenv("INFRABOT_AUDIT_CHECKPOINT_RECORDS", "0")
    code, out, err = run("verify", "--state-dir", str(state))
    assert (code, out) == (4, "")
    assert err.startswith("Error: bad setting INFRABOT_AUDIT_CHECKPOINT_RECORDS: ")


def test_every_checkpoint_deleted_is_exit_1(state: Path, raw_db, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """Deleting every checkpoint (to rewrite the records beneath them) leaves a tail longer
    than the writers' configured bounds allow: tampering, not merely unanchored."""
    with raw_db(state / "audit.sqlite3") as conn:
        recompute_from(conn, "svc", 3, decision="deny")
        conn.execute("DELETE FROM checkpoints")
    monkeypatch.setenv("INFRABOT_AUDIT_CHECKPOINT_RECORDS", "4")
    code, out, err = run("verify", "--state-dir", str(state))
    assert code == 1
    assert "missing_checkpoints: writer svc seq 1: 10 records and no checkpoint, more than the configured every 4: " \
           "checkpoints were deleted or not written" in out.splitlines()
    assert err == "audit trail damaged: 1 problem (12 records from 2 writers, 0 checkpoints)\n"
