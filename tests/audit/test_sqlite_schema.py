"""Both SQLite stores refuse a file written by a newer schema, naming which store it is, and
leave the file as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.audit import AuditStore
from orchestrator.errors import ConfigError
from orchestrator.runs import RunStore


@pytest.mark.parametrize(("opener", "what"), [(AuditStore, "audit database"),
                                              (RunStore, "run log")])
def test_a_newer_schema_is_refused(tmp_path: Path, opener: type, what: str) -> None:
    path = tmp_path / "store.sqlite3"
    opener(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError) as caught:
        opener(path)
    assert f"{what} schema version 99 is newer than this code" in str(caught.value)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
    conn.close()


@pytest.mark.parametrize(("opener", "version"), [(AuditStore, 1), (RunStore, 3)])
def test_reopening_keeps_the_schema(tmp_path: Path, opener: type, version: int) -> None:
    path = tmp_path / "store.sqlite3"
    opener(path).close()
    opener(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    conn.close()

