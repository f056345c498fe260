"""``infrabot audit verify`` and the anchor, through click's CliRunner on SQLite and PostgreSQL:
the review's attack (a short trail rewritten, every checkpoint deleted, the times kept within
the period) exits 1 held to the state directory's anchor or to ``--anchor FILE``, and says
honestly that it cannot tell without one (exit 3, never "intact")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.audit import AuditKeys, AuditStore, Checkpointer
from orchestrator.audit._anchorfile import ANCHOR_FILE, read_anchor
from orchestrator.audit._keys import PUBLIC_FILE
from tests.audit._anchor_attack import NOW, healthy_trail, rewrite
from tests.audit.conftest import record
from tests.audit.test_anchor import _forged, payload
from tests.audit.test_audit_verify_cli import run


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def db(target: Path | str, state: Path, monkeypatch: pytest.MonkeyPatch) -> Path | str:
    """The healthy trail, written as the auth host writes it: the database is the state
    directory's own (its SQLite file, or INFRABOT_DATABASE_URL), the anchor beside the key."""
    monkeypatch.setenv("INFRABOT_AUDIT_CHECKPOINT_RECORDS", "4")
    healthy_trail(target, AuditKeys.open(state / "keys" / "audit", "ES256", now=int(NOW)))
    if isinstance(target, str):
        monkeypatch.setenv("INFRABOT_DATABASE_URL", target)
    return target


@pytest.fixture
def carried(db: Path | str, state: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The trusted keys and the anchor, copied to the auditor's machine before the attack."""
    away = tmp_path / "auditor"
    away.mkdir()
    for name in (PUBLIC_FILE, ANCHOR_FILE):
        shutil.copy(state / "keys" / "audit" / name, away / name)
    return away / PUBLIC_FILE, away / ANCHOR_FILE


def elsewhere(db: Path | str, tmp_path: Path) -> list[str]:
    """Verify from another state directory: the file by --db (PostgreSQL: the environment)."""
    other = ["--state-dir", str(tmp_path / "empty")]
    return ["--db", str(db), *other] if isinstance(db, Path) else other


def expected_problems(anchor: Path) -> list[str]:
    signed = payload(read_anchor(anchor))
    return [
        (f"anchor_missing: writer svc seq 5: the anchor is checkpoint 2 ({signed['time']}), but "
        "the database holds no checkpoint: checkpoints were deleted, or the database was "
        "replaced by an older copy"),
        (f"rewritten: writer svc seq 5: the anchor (checkpoint 2): signed head hash "
        f"{signed['head_hash'][:16]}…, but the record is missing: records up to seq 5 were "
        "rewritten or removed")]


def test_the_attack_fails_held_to_the_state_directorys_anchor(db: Path | str, state: Path,
                                                              raw_db) -> None:
    with raw_db(db) as conn:
        rewrite(conn)
    code, out, err = run("verify", "--state-dir", str(state))
    assert code == 1, (out, err)
    assert out.splitlines() == ["writer svc: 3 records; seq 1-3 unanchored (no checkpoint)",
                                *expected_problems(state / "keys" / "audit" / ANCHOR_FILE)]
    assert err == "audit trail damaged: 2 problems (3 records from 1 writer, 0 checkpoints)\n"


def test_the_attack_fails_held_to_a_carried_anchor_and_is_unverified_without(
        db: Path | str, carried: tuple[Path, Path], tmp_path: Path, raw_db) -> None:
    keys, anchor = carried
    with raw_db(db) as conn:
        rewrite(conn)
    where = elsewhere(db, tmp_path)
    code, out, err = run("verify", *where, "--keys", str(keys), "--anchor", str(anchor))
    assert code == 1, (out, err)
    assert out.splitlines()[1:] == expected_problems(anchor)
    code, out, err = run("verify", *where, "--keys", str(keys))
    assert code == 3
    assert out.splitlines() == [
        "writer svc: 3 records; seq 1-3 unanchored (no checkpoint)",
        ("audit trail unverified: 3 records are unanchored and the database holds no "
        "checkpoint: cannot tell a fresh tail from a rewritten trail without an anchor: run "
        "verify with --anchor (3 records from 1 writer, 0 checkpoints)")]
    assert "intact" not in out
    assert err.startswith("note: not held to an anchor (none at ")


def test_a_healthy_trail_passes_with_its_anchor_and_with_an_older_one(
        db: Path | str, state: Path, carried: tuple[Path, Path], tmp_path: Path) -> None:
    keys, older = carried
    code, out, err = run("verify", "--state-dir", str(state))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == ("audit trail intact and anchored: 5 records from 1 "
                                    "writer, 2 checkpoints")
    audit_keys = AuditKeys.open(state / "keys" / "audit", "ES256", now=int(NOW))
    with AuditStore(db, writer="more") as store:  # the healthy writers went on: checkpoint 3
        checkpointer = Checkpointer(store, audit_keys, anchor_dir=audit_keys.directory,
                                    every_records=4, every_seconds=10, clock=lambda: NOW + 300)
        store.anchor_with(checkpointer)
        for i in range(4):
            store.append(record(resource=f"more-{i}"))
    with AuditStore(db, writer="late") as store:  # and a new writer's fresh tail
        store.append(record(resource="late-0"))
    assert payload(read_anchor(state / "keys" / "audit" / ANCHOR_FILE))["number"] == 3
    code, out, _ = run("verify", *elsewhere(db, tmp_path), "--keys", str(keys), "--anchor",
                       str(older))
    assert code == 3 and out.splitlines()[-1] == (
        "audit trail intact, but 1 record is unanchored (after their writer's last checkpoint, "
        "nothing signed vouches for them): 10 records from 3 writers, 3 checkpoints")
    code, _, err = run("verify", "--state-dir", str(state))
    assert (code, err) == (3, "")


@pytest.mark.parametrize("how", ["bad signature", "another key"])
def test_a_forged_anchor_is_exit_1(db: Path | str, carried: tuple[Path, Path], tmp_path: Path,
                                   how: str) -> None:
    keys, anchor = carried
    forged = tmp_path / "forged.json"
    forged.write_text(_forged(read_anchor(anchor), keys.parent, how))
    code, out, err = run("verify", *elsewhere(db, tmp_path), "--keys", str(keys), "--anchor",
                         str(forged))
    assert code == 1 and out.splitlines()[-1].startswith("forged_anchor: the anchor: ")
    assert err == "audit trail damaged: 1 problem (5 records from 1 writer, 2 checkpoints)\n"


def test_an_unreadable_or_missing_anchor_is_exit_4(db: Path | str, carried: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    keys, _ = carried
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    for path, said in ((bad, f"Error: {bad} is not an audit anchor: not JSON"),
                       (tmp_path / "none.json", f"Error: no audit anchor at {tmp_path}/none.json")):
        code, out, err = run("verify", *elsewhere(db, tmp_path), "--keys", str(keys),
                             "--anchor", str(path))
        assert (code, out, err) == (4, "", said + "\n")
