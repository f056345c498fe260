"""Fixtures for the audit tests: a record factory, and raw SQLite access for tampering."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.audit import AuditRecord

T0 = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)
RecordFactory = Callable[..., AuditRecord]


def record(**overrides: Any) -> AuditRecord:
    base: dict[str, Any] = {
        "time": T0,
        "service": "datadog",
        "action": "metrics:query",
        "resource": "datadog-dashboard",
        "decision": "allow",
        "reason": "ok",
        "performed_by": "agent:infrabot",
        "on_behalf_of": "user:sam",
        "chain": ("agent:infrabot", "user:sam"),
        "scopes": ("urn:infra:metrics:query",),
        "context": {
            "trigger": "manual",
            "environment": "prod",
            "repository": "acme/service-x",
            "commit": "abc123",
            "run_id": "run-1",
        },
        "jti": "jti-0001abcd",
        "run_id": "run-1",
        "request_id": "req-1",
        "status": 200,
    }
    return AuditRecord(**{**base, **overrides})


@pytest.fixture
def make_record() -> RecordFactory:
    return record


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.sqlite3"


@contextmanager
def _attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection with the guard triggers dropped: what an attacker with the file has."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (name,) in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        yield conn


@pytest.fixture
def raw_db() -> Callable[[Path], AbstractContextManager[sqlite3.Connection]]:
    return _attacker


@pytest.fixture
def at() -> Callable[[int], datetime]:
    """Minutes after the reference article's first audit row."""
    return lambda minutes: T0 + timedelta(minutes=minutes)
