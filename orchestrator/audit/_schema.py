"""The audit database schema (version 1), created idempotently by every store that opens it.

One table definition for both back ends; what differs is the row id (``AUTOINCREMENT`` in
SQLite, an identity column in PostgreSQL: neither hands out a deleted tail's ids again) and the
guard triggers, which each engine writes its own way. The ``checkpoints`` table (signed, so not
guarded: verify finds any change to it) is the same on both but for its number's width.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.audit._batch_sql import FUNCTION as APPEND_BATCH
from orchestrator.db import Dialect, Schema

SCHEMA_VERSION = 1
JSON_FIELDS = frozenset({"chain", "scopes", "context"})

_ROW_ID = {
    Dialect.SQLITE: "INTEGER PRIMARY KEY AUTOINCREMENT",
    Dialect.POSTGRESQL: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

# SQLite's INTEGER is 64-bit (and this one the rowid); PostgreSQL's is 32-bit.
_CHECKPOINT_NUMBER = {Dialect.SQLITE: "INTEGER", Dialect.POSTGRESQL: "BIGINT"}

_TABLES = (
    """CREATE TABLE IF NOT EXISTS records (
        id {row_id},
        writer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        time TEXT NOT NULL,
        service TEXT NOT NULL,
        action TEXT NOT NULL,
        resource TEXT NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL,
        performed_by TEXT,
        on_behalf_of TEXT,
        chain TEXT NOT NULL,
        scopes TEXT NOT NULL,
        context TEXT NOT NULL,
        jti TEXT,
        run_id TEXT,
        request_id TEXT,
        status INTEGER
    )""",
    # Not UNIQUE on purpose: a duplicated seq must be storable so that verify can report it.
    "CREATE INDEX IF NOT EXISTS records_writer_seq ON records (writer, seq)",
    "CREATE INDEX IF NOT EXISTS records_time ON records (time, id)",
    "CREATE INDEX IF NOT EXISTS records_user ON records (on_behalf_of, time)",
    "CREATE INDEX IF NOT EXISTS records_agent ON records (performed_by, time)",
    "CREATE INDEX IF NOT EXISTS records_run ON records (run_id, time)",
    """CREATE TABLE IF NOT EXISTS writers (
        writer TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        last_hash TEXT NOT NULL
    )""",
    # Signed checkpoints (orchestrator.audit._checkpoint), numbered across all writers: added to
    # version 1 without a bump, since a reader that does not know the table is not misled by it.
    """CREATE TABLE IF NOT EXISTS checkpoints (
        number {checkpoint_number} PRIMARY KEY,
        writer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        head_hash TEXT NOT NULL,
        time TEXT NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL,
        kid TEXT NOT NULL,
        jws TEXT NOT NULL
    )""",
)

_APPEND_ONLY = "audit records are append-only"
_FORWARD_ONLY = "a writer head only moves one record forward"
_KEEP_HEADS = "writer heads are never removed"

_TRIGGERS = {
    Dialect.SQLITE: (
        f"""CREATE TRIGGER IF NOT EXISTS records_append_only_update BEFORE UPDATE ON records
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS records_append_only_delete BEFORE DELETE ON records
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS writers_forward_only BEFORE UPDATE ON writers
        WHEN NEW.last_seq != OLD.last_seq + 1 OR NEW.writer != OLD.writer
        BEGIN SELECT RAISE(ABORT, '{_FORWARD_ONLY}'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS writers_keep BEFORE DELETE ON writers
        BEGIN SELECT RAISE(ABORT, '{_KEEP_HEADS}'); END""",
    ),
    Dialect.POSTGRESQL: (
        f"""CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$""",
        """CREATE OR REPLACE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON records
        FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
        """CREATE OR REPLACE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
        f"""CREATE OR REPLACE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' THEN RAISE EXCEPTION '{_KEEP_HEADS}'; END IF;
            IF NEW.last_seq <> OLD.last_seq + 1 OR NEW.writer <> OLD.writer THEN
                RAISE EXCEPTION '{_FORWARD_ONLY}';
            END IF;
            RETURN NEW;
        END $$""",
        """CREATE OR REPLACE TRIGGER writers_forward_only BEFORE UPDATE OR DELETE ON writers
        FOR EACH ROW EXECUTE FUNCTION audit_head_forward()""",
        """CREATE OR REPLACE TRIGGER writers_no_truncate BEFORE TRUNCATE ON writers
        FOR EACH STATEMENT EXECUTE FUNCTION audit_head_forward()""",
        # a batch in one statement (orchestrator.audit._batch_sql); version 1 without a bump:
        # a store that does not know it appends with the statements it stands for
        APPEND_BATCH,
    ),
}


def statements(dialect: Dialect) -> Sequence[str]:
    tables = (sql.replace("{row_id}", _ROW_ID[dialect])
              .replace("{checkpoint_number}", _CHECKPOINT_NUMBER[dialect]) for sql in _TABLES)
    return (*tables, *_TRIGGERS[dialect])


SCHEMA = Schema(store="audit", what="audit database", version=SCHEMA_VERSION,
                statements=statements, busy_timeout=5.0,
                tables=frozenset({"records", "writers"}))
