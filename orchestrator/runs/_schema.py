"""The run log schema (version 1), created idempotently by every store that opens the file.

Three tables: ``runs`` (one row per run, its status and origin), ``events`` (the log, numbered per
run) and ``hops`` (one row per completed agent hop: the idempotency guard across redelivery).
Times are fixed-width UTC text, so text order is time order.
"""

from __future__ import annotations

from datetime import UTC, datetime

SCHEMA_VERSION = 1
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

RUN_COLUMNS = (
    "run_id", "workflow", "user", "status", "reason", "trigger", "environment", "repository",
    "commit_sha", "service", "pr", "mode", "created_at", "finished_at",
)
EVENT_COLUMNS = ("run_id", "seq", "time", "kind", "agent", "detail")

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        user TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        trigger TEXT NOT NULL,
        environment TEXT NOT NULL,
        repository TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        service TEXT NOT NULL,
        pr INTEGER,
        mode TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at)",
    "CREATE INDEX IF NOT EXISTS runs_user ON runs (user, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status, created_at)",
    """CREATE TABLE IF NOT EXISTS events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        agent TEXT,
        detail TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS hops (
        run_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        task_id TEXT NOT NULL,
        time TEXT NOT NULL,
        PRIMARY KEY (run_id, agent)
    )""",
)


def format_time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("run times must be timezone-aware")
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
