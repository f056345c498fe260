"""Fixtures for the run log tests: a store on each back end (a temporary SQLite file, a fresh
PostgreSQL schema), a run origin and a clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.runs import RunStore
from tests._postgres import BACK_ENDS, store_target

T0 = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)


@dataclass(frozen=True)
class Origin:
    """What a run is rooted in (``orchestrator.ci.CIEvent`` in production)."""

    user: str = "user:sam"
    trigger: str = "ci_pipeline"
    environment: str = "prod"
    repository: str = "acme/service-x"
    commit: str = "9f2c1e7"
    service: str = "service-x"
    pr: int | None = 42


def at_once(db: Path | str, count: int, action: Callable[[RunStore], list[str]]) -> list[str]:
    """Everything ``action`` returns when ``count`` threads run it at once, each with its own
    store (its own connection) on ``db``."""
    RunStore(db).close()  # created before the race
    results: list[str] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        with RunStore(db) as runs:
            barrier.wait()
            results.extend(action(runs))

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class Clock:
    """Starts at T0 and advances ``step`` on every reading."""

    def __init__(self, step: timedelta = timedelta(milliseconds=5)) -> None:
        self.now = T0
        self.step = step

    def __call__(self) -> datetime:
        current = self.now
        self.now += self.step
        return current


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "runs.sqlite3"


@pytest.fixture(params=BACK_ENDS)
def db(request: pytest.FixtureRequest, sqlite_db: Path) -> Iterator[Path | str]:
    """Where the run log under test lives: each test runs on SQLite and on PostgreSQL."""
    with store_target(request.param, sqlite_db) as where:
        yield where


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db: Path | str, clock: Clock) -> Iterator[RunStore]:
    with RunStore(db, clock=clock) as runs:
        yield runs


@pytest.fixture
def origin() -> Origin:
    return Origin()
