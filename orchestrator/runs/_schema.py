"""The run log schema (version 3), created idempotently by every store that opens the file.

The tables: ``runs`` (one row per run, its status and origin), ``events`` (the log, numbered per
run), ``hops`` (one row per completed agent hop: the idempotency guard across redelivery),
``deliveries`` (the CI deliveries received in the last day: the webhook receiver's replay guard
that survives restarts; added in version 2, so a version 1 file gains it when opened) and
``journal`` (each hop's steps and hand-offs, recorded before and after they act; see
:mod:`orchestrator.runs._journal`; added in version 3, so an older file gains it when opened);
and ``spans`` (the OpenTelemetry spans of the runs, kept when no OTLP endpoint is set: see
:mod:`orchestrator.runs._spans`; added without a version bump, so a file opened read-only may
lack it, which :meth:`Database.has_table` tells); and ``delivery_claims`` (the run each delivery
was claimed for, and whether its receiver answered: :mod:`orchestrator.runs._deliveries`; added
without a version bump too: every store that opens an older log, SQLite or PostgreSQL, creates
it, and a delivery received before has no claim row, which counts as answered); and
``run_ends`` (the ended runs whose tokens are still to be revoked: :mod:`orchestrator.runs._ends`;
added without a version bump as well: a run that ended before it was made is not queued).
Times are fixed-width UTC text, so text order is time order. :func:`read_run` turns rows back
into a :class:`~orchestrator.runs._model.Run`, each event's detail validated as its kind's model.

The same DDL serves SQLite and PostgreSQL. ``"user"`` is quoted everywhere (a reserved word in
PostgreSQL). ``runs.rowid`` is SQLite's implicit row id; PostgreSQL has none, so there it is an
identity column: both give ``ORDER BY created_at, rowid`` the order runs were created in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.db import Dialect, Schema
from orchestrator.runs._events import EventDetailError, read_detail
from orchestrator.runs._model import Run, RunEvent

SCHEMA_VERSION = 3
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

RUN_COLUMNS = (
    "run_id", "workflow", "user", "status", "reason", "trigger", "environment", "repository",
    "commit_sha", "service", "pr", "mode", "created_at", "finished_at",
)
EVENT_COLUMNS = ("run_id", "seq", "time", "kind", "agent", "detail")

_ROW_ID = {
    Dialect.SQLITE: "",
    Dialect.POSTGRESQL: ",\n        rowid BIGINT GENERATED ALWAYS AS IDENTITY",
}

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        "user" TEXT NOT NULL,
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
        finished_at TEXT{row_id}
    )""",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at)",
    'CREATE INDEX IF NOT EXISTS runs_user ON runs ("user", created_at)',
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
    """CREATE TABLE IF NOT EXISTS deliveries (
        delivery_id TEXT PRIMARY KEY,
        received_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries (received_at)",
    """CREATE TABLE IF NOT EXISTS delivery_claims (
        delivery_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        state TEXT NOT NULL,
        received_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS delivery_claims_received ON delivery_claims (received_at)",
    """CREATE TABLE IF NOT EXISTS journal (
        run_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        step INTEGER NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (run_id, agent, step)
    )""",
    """CREATE TABLE IF NOT EXISTS run_ends (
        run_id TEXT PRIMARY KEY,
        ended_at TEXT NOT NULL,
        cause TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS run_ends_ended ON run_ends (ended_at, run_id)",
    """CREATE TABLE IF NOT EXISTS spans (
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_id TEXT,
        name TEXT NOT NULL,
        service TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT NOT NULL,
        status TEXT NOT NULL,
        attributes TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id)
    )""",
)


def statements(dialect: Dialect) -> Sequence[str]:
    return tuple(sql.replace("{row_id}", _ROW_ID[dialect]) for sql in _STATEMENTS)


# Opened read-only (``infrabot runs``), a run log must have what a run is read from; the other
# tables are optional there (an older log lacks some).
SCHEMA = Schema(store="runs", what="run log", version=SCHEMA_VERSION, statements=statements,
                unavailable="run_log_unavailable", busy_timeout=10.0,
                tables=frozenset({"runs", "events"}))


def format_time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("run times must be timezone-aware")
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def read_run(row: Sequence[Any], events: Sequence[Sequence[Any]]) -> Run:
    """A run from its ``runs`` row (:data:`RUN_COLUMNS`) and its ``events`` rows, in order."""
    fields = dict(zip(RUN_COLUMNS, row, strict=True))
    fields["commit"] = fields.pop("commit_sha")
    fields["created_at"] = parse_time(fields["created_at"])
    if fields["finished_at"] is not None:
        fields["finished_at"] = parse_time(fields["finished_at"])
    return Run.model_validate({**fields, "events": tuple(_event(e) for e in events)})


def _event(row: Sequence[Any]) -> RunEvent:
    """A stored event, its detail validated as the model of its kind (EventDetailError)."""
    run_id, seq, when, kind, agent, detail = row
    try:
        parsed = read_detail(kind, detail)
    except EventDetailError as exc:  # this one says where; the JSON decoder's stays the cause
        raise EventDetailError(f"run {run_id} event {seq}: {exc}") from exc.__cause__
    return RunEvent(run_id=run_id, seq=seq, time=parse_time(when), kind=parsed.kind,
                    agent=agent, detail=parsed)
