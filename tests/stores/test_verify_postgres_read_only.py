"""``infrabot audit verify`` (and ``audit query|export``) on PostgreSQL changes nothing, not even
the schema: run as a user runs it (a fresh process, which has applied no schema yet), it
applies no DDL, refuses a database without the audit tables as it refuses such a SQLite file,
and reads in READ ONLY transactions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.audit import AuditStore
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.audit._schema import SCHEMA
from orchestrator.db import open_database
from orchestrator.db._postgres import describe
from orchestrator.errors import ConfigError, Unavailable
from tests._postgres import fresh_schema, raw
from tests.audit.conftest import anchored_trail, record
from tests.cli._cli import Result, clean_env, infrabot

# Everything DDL would touch in the test's schema; xmin changes when a row is written again,
# so a CREATE OR REPLACE of the same text, or an upsert of the same version, shows too.
_CATALOG = """
SELECT 'relation', c.relname, c.relkind::text, c.xmin::text FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace
UNION ALL
SELECT 'trigger', t.tgname, t.tgenabled::text, t.xmin::text FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'function', p.proname, md5(p.prosrc), p.xmin::text FROM pg_proc p
 WHERE p.pronamespace = current_schema()::regnamespace
ORDER BY 1, 2
"""


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as where:
        yield where


@pytest.fixture
def trail(url: str, tmp_path: Path) -> Path:
    """6 records of writer svc, anchored at seq 4 and 6; returns the trusted keys file."""
    anchored_trail(url, tmp_path / "keys")
    return tmp_path / "keys" / PUBLIC_FILE


def catalog(url: str) -> list[tuple[str, ...]]:
    with raw(url) as conn:
        versions = conn.execute("SELECT to_regclass('schema_versions') IS NOT NULL").fetchone()
        rows = conn.execute(_CATALOG).fetchall()
        if versions[0]:
            rows += conn.execute("SELECT 'version', store, version::text, xmin::text "
                                 "FROM schema_versions ORDER BY store").fetchall()
    return rows


def command(url: str, tmp_path: Path, *args: str) -> Result:
    env = clean_env(INFRABOT_DATABASE_URL=url, INFRABOT_STATE_DIR=str(tmp_path / "empty"))
    return infrabot("audit", *args, env=env, cwd=tmp_path)


def test_verify_applies_no_schema(url: str, trail: Path, tmp_path: Path) -> None:
    before = catalog(url)
    out = command(url, tmp_path, "verify", "--keys", str(trail)).ok().stdout
    assert out.splitlines()[-1] == ("audit trail intact and anchored: 6 records from 1 writer, "
                                    "2 checkpoints")
    assert catalog(url) == before


@pytest.mark.parametrize(("sql", "trigger"), [
    ("DROP TRIGGER records_append_only ON records", "records_append_only"),
    ("DROP TRIGGER writers_no_truncate ON writers", "writers_no_truncate"),
    ("ALTER TABLE records DISABLE TRIGGER records_no_truncate", "records_no_truncate"),
    ("ALTER TABLE writers DISABLE TRIGGER writers_forward_only", "writers_forward_only"),
])
def test_a_dropped_or_disabled_guard_is_reported_and_left_as_found(
        url: str, trail: Path, tmp_path: Path, sql: str, trigger: str) -> None:
    with raw(url) as conn:
        conn.execute(sql)
    before = catalog(url)
    result = command(url, tmp_path, "verify", "--keys", str(trail))
    result.no_traceback()
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [(
        f"missing_guard: trigger {trigger}: missing or disabled, though every audit store "
        "creates it: the database was changed outside the audit store")]
    assert result.stderr == ("audit trail damaged: 1 problem (6 records from 1 writer, "
                             "2 checkpoints)\n")
    assert catalog(url) == before


@pytest.mark.parametrize(("args", "code"), [(("verify",), 4), (("query",), 1),
                                            (("export",), 1)])
def test_dropped_audit_tables_are_not_an_audit_database(url: str, trail: Path, tmp_path: Path,
                                                        args: tuple[str, ...], code: int
                                                        ) -> None:
    with raw(url) as conn:
        conn.execute("DROP TABLE records, writers, checkpoints CASCADE")
    before = catalog(url)
    result = command(url, tmp_path, *args)
    assert result.returncode == code and result.stdout == ""
    assert result.error_line() == (f"{describe(url)} is not a usable audit database: it has "
                                   "no audit tables")
    assert catalog(url) == before


def test_an_empty_database_is_left_empty(url: str, tmp_path: Path) -> None:
    result = command(url, tmp_path, "verify")
    assert result.returncode == 4
    assert result.error_line() == (f"{describe(url)} is not a usable audit database: it has "
                                   "no audit tables")
    assert catalog(url) == []


def test_a_newer_schema_is_refused_read_only(url: str, trail: Path, tmp_path: Path) -> None:
    with raw(url) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE store = 'audit'")
    result = command(url, tmp_path, "verify", "--keys", str(trail))
    assert result.returncode == 4
    assert result.error_line() == "audit database schema version 99 is newer than this code (1)"


def test_a_missing_version_row_is_read_and_not_written(url: str, trail: Path,
                                                       tmp_path: Path) -> None:
    with raw(url) as conn:
        conn.execute("DELETE FROM schema_versions")
    before = catalog(url)
    command(url, tmp_path, "verify", "--keys", str(trail)).ok()
    assert catalog(url) == before


def test_a_read_only_store_reads_and_cannot_write(url: str, trail: Path) -> None:
    with AuditStore(url, read_only=True) as store:
        assert [r.resource for r in store.query()] == [f"r-{i}" for i in range(6)]
        assert len(store.snapshot().checkpoints) == 2
        with pytest.raises(Unavailable) as caught:
            store.check_writable()
        assert str(caught.value) == "audit store cannot be written"
        with pytest.raises(Unavailable):
            store.append(record())
    with AuditStore(url) as store:
        assert len(store.query()) == 6


def test_a_read_only_database_reads_in_read_only_transactions(url: str, trail: Path) -> None:
    """What the server is told: a write slipped into a read is refused there, and so is a
    statement sent on its own."""
    with open_database(url, SCHEMA, read_only=True) as db:
        with db.transaction(write=False) as tx:
            assert tx.execute("SHOW transaction_read_only").fetchone() == ("on",)
        with pytest.raises(Unavailable) as caught, db.transaction(write=False) as tx:
            tx.execute("DELETE FROM checkpoints").fetchall()
        assert "read-only transaction" in str(caught.value.__cause__)
        with pytest.raises(Unavailable):
            db.statement("DELETE FROM checkpoints")
    with raw(url) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (2,)


def test_a_read_only_open_of_a_database_without_the_tables_is_a_config_error(
        url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditStore(url, read_only=True)
    assert str(caught.value) == (f"{describe(url)} is not a usable audit database: it has no "
                                 "audit tables")
    assert catalog(url) == []
