"""``infrabot audit verify`` in its own process on the auth host: the writers' anchor beside the
audit key catches the review's attack on a short SQLite trail (exit 1, where it used to say
"intact" with exit 3), and a trail that no writer ever signed is still only unanchored."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from _cli import clean_env, infrabot

from orchestrator.audit import AuditKeys
from tests.audit._anchor_attack import NOW, healthy_trail, rewrite


def _attacked(state: Path) -> None:
    """The attack on the file, guards dropped and put back as they were."""
    with closing(sqlite3.connect(state / "audit.sqlite3", isolation_level=None)) as conn:
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                                ).fetchall()
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        rewrite(conn)
        for _, sql in triggers:
            conn.execute(sql)


def test_the_attack_on_a_short_trail_is_exit_1_on_the_auth_host(tmp_path: Path) -> None:
    state = tmp_path / "state"
    healthy_trail(state / "audit.sqlite3",
                  AuditKeys.open(state / "keys" / "audit", "ES256", now=int(NOW)))
    assert infrabot("audit", "verify", "--state-dir", str(state), env=clean_env()
                    ).returncode == 0
    _attacked(state)
    result = infrabot("audit", "verify", "--state-dir", str(state), env=clean_env())
    assert result.returncode == 1, result
    assert [line.split(":")[0] for line in result.stdout.splitlines()[1:]] == [
        "anchor_missing", "rewritten"]
    assert result.stderr == ("audit trail damaged: 2 problems (3 records from 1 writer, "
                             "0 checkpoints)\n")


def test_verify_help_names_the_anchor() -> None:
    out = infrabot("audit", "verify", "--help", env=clean_env()).ok().stdout
    assert "--anchor FILE" in out and "audit-anchor.json" in out
