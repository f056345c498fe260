"""PostgreSQL connections killed while processes write (``pg_terminate_backend`` on this test's
own backends: what a server restart does to them, without stopping a server others use).

The audit trail loses and duplicates nothing: an append that returned is stored exactly once,
one that raised is not stored, and every chain verifies. The run log goes on after the kills.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.db._postgres import POOL_MAX_SIZE
from orchestrator.errors import Unavailable
from orchestrator.runs import RunStore
from tests._events import detail
from tests._postgres import fresh_schema, kill_connections
from tests.runs.conftest import Origin
from tests.stores._pg_proxy import proxy

WRITERS, APPENDS = 3, 300


@pytest.fixture
def url() -> str:
    with fresh_schema() as where:
        yield where


def _writer(url: str, name: str, opened: Any, results: Any) -> None:
    """A writer process: APPENDS appends, each reported as ``(resource, stored?)``."""
    outcome: list[tuple[str, bool]] = []
    with AuditStore(url) as store:
        opened.release()
        for i in range(APPENDS):
            resource = f"{name}-{i}"
            try:
                store.append(AuditRecord(time=datetime.now(UTC), service="aws",
                                         action="instances:describe", resource=resource,
                                         decision="allow", reason="ok"))
                outcome.append((resource, True))
            except Unavailable:
                outcome.append((resource, False))
                time.sleep(0.01)
    results.put(outcome)


def test_killed_connections_lose_and_duplicate_no_audit_record(url: str) -> None:
    AuditStore(url).close()
    ctx = multiprocessing.get_context("spawn")
    results, opened = ctx.Queue(), ctx.Semaphore(0)
    procs = [ctx.Process(target=_writer, args=(url, f"w{n}", opened, results))
             for n in range(WRITERS)]
    for proc in procs:
        proc.start()
    for _ in procs:
        assert opened.acquire(timeout=60), "a writer did not open its store"
    kills = 0
    while any(proc.is_alive() for proc in procs) and results.qsize() < WRITERS:
        kills += kill_connections(url)
        time.sleep(0.1)
    outcomes = [item for _ in procs for item in results.get(timeout=120)]
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    assert kills > 0, "no connection was killed: the fault was not injected"
    with AuditStore(url) as store:
        report = store.verify()
        stored = Counter(r.resource for r in store.query())
    assert report.ok, report.problems
    returned = {resource for resource, ok in outcomes if ok}
    raised = {resource for resource, ok in outcomes if not ok}
    assert len(returned) + len(raised) == WRITERS * APPENDS
    assert {resource: stored[resource] for resource in returned} == dict.fromkeys(returned, 1)
    assert not raised & set(stored), "an append that raised was stored"
    assert report.records == len(returned)


def test_the_run_log_goes_on_after_its_connections_are_killed(url: str) -> None:
    with RunStore(url) as runs:
        runs.create("run-1", workflow="post-deploy", event=Origin())
        kill_connections(url)
        runs.add_event("run-1", None, detail("started", delivery="d-1"))
        kill_connections(url)
        assert runs.finish("run-1", "succeeded", "ok")
        run = runs.get("run-1")
    assert run is not None and run.status == "succeeded"
    assert [e.seq for e in run.events] == [1, 2]


def test_a_goodbye_read_with_the_last_reply_ends_the_pooled_connection(url: str) -> None:
    """The backend is killed after it answered a COMMIT but before the client read the answer:
    libpq reads the answer and the server's goodbye at once, and the socket shows nothing until
    the hang-up arrives. That connection is dead and must not be handed out again."""
    with proxy(url) as through, RunStore(through.url(url)) as runs:
        runs.create("run-1", workflow="post-deploy", event=Origin())
        through.hold_next_commit_reply()
        failed: list[Exception] = []

        def add() -> None:
            try:
                runs.add_event("run-1", None, detail("started", delivery="d-1"))
            except Exception as exc:  # noqa: BLE001 - the test reports it
                failed.append(exc)

        adding = threading.Thread(target=add)
        adding.start()
        assert through.holding.wait(timeout=30), "the COMMIT's reply was not held"
        assert kill_connections(url) > 0
        through.release()
        adding.join(timeout=30)
        assert not adding.is_alive() and not failed, failed
        for _ in range(POOL_MAX_SIZE + 1):  # every pooled connection is taken once at least
            assert runs.get("run-1") is not None
        assert runs.finish("run-1", "succeeded", "ok")
        run = runs.get("run-1")
    assert run is not None and run.status == "succeeded"
    assert [e.seq for e in run.events] == [1, 2]


def test_writes_wait_for_each_other_across_connections(url: str) -> None:
    """Events of one run from many threads (each its own pooled connection) get distinct,
    gapless numbers: the run's lock serialises them."""
    with RunStore(url) as runs:
        runs.create("run-1", workflow="post-deploy", event=Origin())

        def add() -> None:
            for i in range(10):
                runs.add_event("run-1", None, detail("started", delivery=f"d-{i}"))

        threads = [threading.Thread(target=add) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run = runs.get("run-1")
    assert run is not None and [e.seq for e in run.events] == list(range(1, 41))
