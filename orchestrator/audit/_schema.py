"""The audit database schema (version 1), created idempotently by every store that opens it."""

from __future__ import annotations

SCHEMA_VERSION = 1
JSON_FIELDS = frozenset({"chain", "scopes", "context"})

STATEMENTS = (
    # AUTOINCREMENT: a deleted tail's row ids are never handed out again.
    """CREATE TABLE IF NOT EXISTS records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
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
        number INTEGER PRIMARY KEY,
        writer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        head_hash TEXT NOT NULL,
        time TEXT NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL,
        kid TEXT NOT NULL,
        jws TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS records_append_only_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS records_append_only_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS writers_forward_only BEFORE UPDATE ON writers
    WHEN NEW.last_seq != OLD.last_seq + 1 OR NEW.writer != OLD.writer
    BEGIN SELECT RAISE(ABORT, 'a writer head only moves one record forward'); END""",
    """CREATE TRIGGER IF NOT EXISTS writers_keep BEFORE DELETE ON writers
    BEGIN SELECT RAISE(ABORT, 'writer heads are never removed'); END""",
)


