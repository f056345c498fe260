"""Fixtures for the audit tests: a record factory, a store target on each back end (a SQLite
file, a fresh PostgreSQL schema), and raw access to either for tampering."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.audit import AuditKeys, AuditRecord, AuditStore, Checkpointer
from tests._postgres import BACK_ENDS, raw, store_target

T0 = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)
NOW = 1_800_000_000.0  # when the checkpoint and anchor tests' audit keys are made
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


def anchored_trail(target: Path | str, keys_dir: Path, records: int = 6, every: int = 4) -> None:
    """``records`` records of writer ``svc`` at ``target`` (resources ``r-0``...), anchored by
    a checkpoint every ``every`` records and one at shutdown, signed with the audit key in
    ``keys_dir`` (created there if missing)."""
    keys = AuditKeys.open(keys_dir, "ES256", now=int(time.time()))
    with AuditStore(target, writer="svc") as store:
        checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                    every_records=every, every_seconds=60, clock=time.time)
        store.anchor_with(checkpointer)
        for i in range(records):
            store.append(record(resource=f"r-{i}"))
        checkpointer.close()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """Where a state directory keeps its audit keys (and its anchor)."""
    return tmp_path / "state" / "keys" / "audit"


@pytest.fixture
def keys(keys_dir: Path) -> AuditKeys:
    return AuditKeys.open(keys_dir, "ES256", now=int(NOW))


@pytest.fixture
def make_record() -> RecordFactory:
    return record


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.sqlite3"


@pytest.fixture(params=BACK_ENDS)
def target(request: pytest.FixtureRequest, sqlite_path: Path) -> Iterator[Path | str]:
    """Where the store under test lives: each test runs on SQLite and on PostgreSQL."""
    with store_target(request.param, sqlite_path) as where:
        yield where


@contextmanager
def _attacker(target: Path | str) -> Iterator[Any]:
    """A plain connection with the guard triggers off: what an attacker with the database has.
    Like a careful attacker, it leaves the guards as it found them (``audit verify`` reports a
    guard gone: tests/audit/test_verify_guards.py)."""
    if isinstance(target, str):
        with raw(target) as conn:  # triggers off for this session only
            yield conn
        return
    with closing(sqlite3.connect(target, isolation_level=None)) as conn:
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                                ).fetchall()
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        yield conn
        for _, sql in triggers:
            conn.execute(sql)


@pytest.fixture
def raw_db() -> Callable[[Path | str], AbstractContextManager[Any]]:
    return _attacker


@pytest.fixture
def at() -> Callable[[int], datetime]:
    """Minutes after the reference article's first audit row."""
    return lambda minutes: T0 + timedelta(minutes=minutes)
