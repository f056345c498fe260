"""``infrabot audit verify`` reports a guard trigger that was dropped (every audit store creates
them with the tables; only a change made outside the store removes one), and leaves the file as
it found it. (PostgreSQL, dropped and disabled: tests/stores/test_verify_postgres_read_only.py.)"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from infrabot.cli._audit import audit
from tests.audit.conftest import anchored_trail

TRIGGERS = ("records_append_only_update", "records_append_only_delete", "writers_forward_only",
            "writers_keep")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    anchored_trail(state / "audit.sqlite3", state / "keys" / "audit")
    return state / "audit.sqlite3"


def verify(db: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(audit, ["verify", "--db", str(db), "--state-dir",
                                        str(db.parent)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def test_every_guard_in_place_is_intact(db: Path) -> None:
    code, out, _ = verify(db)
    assert code == 0 and out.splitlines()[-1].startswith("audit trail intact and anchored")


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_dropped_guard_is_reported_and_the_file_left_as_found(db: Path, trigger: str) -> None:
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute(f"DROP TRIGGER {trigger}")
    before = db.read_bytes()
    code, out, err = verify(db)
    assert code == 1
    assert out.splitlines()[1:] == [(
        f"missing_guard: trigger {trigger}: missing or disabled, though every audit store "
        "creates it: the database was changed outside the audit store")]
    assert err == "audit trail damaged: 1 problem (6 records from 1 writer, 2 checkpoints)\n"
    assert db.read_bytes() == before


def test_every_guard_dropped_is_one_line_each(db: Path) -> None:
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER {trigger}")
    code, out, err = verify(db)
    assert code == 1
    assert [line.split(" ")[2].rstrip(":") for line in out.splitlines()[1:]] == sorted(TRIGGERS)
    assert "4 problems" in err
