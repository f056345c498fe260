"""Benchmark 5: audit records per second into the default store, from 1, 2 and 4 processes,
and from 1, 4 and 16 threads of one process (group commit).

Each writer process opens its own :class:`~orchestrator.audit.AuditStore` on one shared SQLite
file (as the auth server, the services and the workers do) and appends records like a
service's (a three-actor chain, scopes, context), each in its own committed transaction. The
baseline, measured the same way in the same run: a bare SQLite insert of the same content as
one JSON text per row, one committed transaction each, same journal settings (WAL,
``synchronous=NORMAL``, busy timeout). The threads table is what group commit changes: the
threads of a process (serve's request threads) share one store, and the appends that arrive
while one is written go together in the next transaction; the bare baseline gives each thread
its own connection, one committed transaction per row.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench._report import Table

WRITERS = (1, 2, 4)
THREADS = (1, 4, 16)
_CTX = mp.get_context("forkserver")  # one clean server process, forked per writer
_CTX.set_forkserver_preload(["orchestrator.audit", "bench.audit"])


def record_fields(i: int) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC), "service": "aws", "action": "tags:delete",
        "resource": "ec2:instance/i-0a1b2c3d4e5f60003", "decision": "allow", "reason": "ok",
        "performed_by": "agent:cleanup", "on_behalf_of": "user:sam",
        "chain": ("agent:cleanup", "agent:argocd", "agent:infrabot", "user:sam"),
        "scopes": ("urn:infra:infrastructure:clean",),
        "context": {"trigger": "ci_pipeline", "environment": "prod",
                    "repository": "acme/service-x", "commit": "9f2c1e7",
                    "run_id": "run-0123456789abcdef"},
        "jti": f"jti-{i:012d}-bench", "run_id": "run-0123456789abcdef",
        "request_id": f"run-0123456789abcdef.cleanup.{i}", "status": 200,
    }


def _store_writer(target: Path | str, count: int, ready: Any, go: Any, out: Any) -> None:
    from orchestrator.audit import AuditRecord, AuditStore

    with AuditStore(target) as store:
        records = [AuditRecord(**record_fields(i)) for i in range(count)]
        ready.put(1)
        go.wait(60)
        start = time.time()
        for record in records:
            store.append(record)
        out.put((start, time.time()))


def _raw_writer(path: Path, count: int, ready: Any, go: Any, out: Any) -> None:
    conn = _raw_connection(path)
    rows = [json.dumps(record_fields(i), default=str) for i in range(count)]
    ready.put(1)
    go.wait(60)
    start = time.time()
    for row in rows:
        _raw_insert(conn, row)
    out.put((start, time.time()))
    conn.close()


def _raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _raw_insert(conn: sqlite3.Connection, row: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO raw (content) VALUES (?)", (row,))
    conn.execute("COMMIT")


def in_threads(threads: int, work: Any, ready: Any, go: Any, out: Any) -> None:
    """``work(i)`` for each thread ``i``, all started together once ``go`` is set."""
    start_line = threading.Barrier(threads + 1)

    def body(index: int) -> None:
        start_line.wait()
        work(index)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    ready.put(1)
    go.wait(60)
    start = time.time()
    start_line.wait()
    for thread in pool:
        thread.join()
    out.put((start, time.time()))


def store_threads(threads: int, target: Path | str, count: int, ready: Any, go: Any,
                  out: Any) -> None:
    """One process, ``threads`` threads appending ``count`` records to one shared store."""
    from orchestrator.audit import AuditRecord, AuditStore

    with AuditStore(target) as store:
        records = [AuditRecord(**record_fields(i)) for i in range(count)]

        def work(index: int) -> None:
            for record in records[index::threads]:
                store.append(record)

        in_threads(threads, work, ready, go, out)


def _raw_threads(threads: int, path: Path, count: int, ready: Any, go: Any, out: Any) -> None:
    rows = [json.dumps(record_fields(i), default=str) for i in range(count)]
    conns = [_raw_connection(path) for _ in range(threads)]

    def work(index: int) -> None:
        for row in rows[index::threads]:
            _raw_insert(conns[index], row)

    try:
        in_threads(threads, work, ready, go, out)
    finally:
        for conn in conns:
            conn.close()


def _rate(target: Any, path: Path | str, processes: int, per_process: int) -> float:
    ready, out, go = _CTX.Queue(), _CTX.Queue(), _CTX.Event()
    procs = [_CTX.Process(target=target, args=(path, per_process, ready, go, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        go.set()
        spans = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return processes * per_process / elapsed


SPAN_NOTE = ("{records} records per writer process; the rate is all records over the span from "
             "the first writer's start to the last one's end (records built before the start).")


def measure(table: Table, count: int, records: int, store: tuple[Any, Path | str],
            raw: tuple[Any, Path | str]) -> None:
    """One row: ``count`` store writers, then ``count`` raw writers (each a target function
    and where it writes), and a verify of what the store writers wrote."""
    from orchestrator.audit import AuditStore

    AuditStore(store[1]).close()  # the schema, created once before the writers
    store_rate = _rate(store[0], store[1], count, records)
    raw_rate = _rate(raw[0], raw[1], count, records)
    with AuditStore(store[1]) as opened:
        report = opened.verify()
    table.add(count, f"{store_rate:,.0f}", f"{raw_rate:,.0f}", f"{store_rate / raw_rate:.2f}",
              f"{'intact' if report.ok else 'BROKEN'} ({count * records} records)")


def run(*, records: int = 2000, writers: tuple[int, ...] = WRITERS,
        work: Path | None = None) -> list[Table]:
    """``records`` per writer process, for each process count."""
    table = Table("Audit: records per second into AuditStore (SQLite), N writer processes",
                  ["writers", "AuditStore records/s", "raw SQLite inserts/s",
                   "AuditStore / raw", "verify of the file"])
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=work) as tmp:
        for count in writers:
            store_path = Path(tmp) / f"audit-{count}.sqlite3"
            raw_path = Path(tmp) / f"raw-{count}.sqlite3"
            with sqlite3.connect(raw_path) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, content TEXT)")
            measure(table, count, records, (_store_writer, store_path), (_raw_writer, raw_path))
    table.notes += [
        SPAN_NOTE.format(records=records),
        ("AuditStore: validation, hash chain per writer, record + writer head in one "
        "`BEGIN IMMEDIATE` transaction. Raw: one JSON text per row, one transaction each."),
    ]
    return [table, _threads_table(records, work)]


def _threads_table(records: int, work: Path | None) -> Table:
    table = Table("Audit: group commit, one process, N threads appending to one AuditStore "
                  "(SQLite)", ["threads", "AuditStore records/s",
                               "raw inserts/s (a connection per thread)", "AuditStore / raw"])
    with tempfile.TemporaryDirectory(prefix="bench-audit-threads-", dir=work) as tmp:
        for count in THREADS:
            store_path = Path(tmp) / f"audit-{count}.sqlite3"
            raw_path = Path(tmp) / f"raw-{count}.sqlite3"
            with sqlite3.connect(raw_path) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, content TEXT)")
            from orchestrator.audit import AuditStore

            AuditStore(store_path).close()  # the schema, before the clock starts
            store = _rate(partial(store_threads, count), store_path, 1, records)
            raw = _rate(partial(_raw_threads, count), raw_path, 1, records)
            table.add(count, f"{store:,.0f}", f"{raw:,.0f}", f"{store / raw:.2f}")
    table.notes += [
        f"{records} records in one process, shared out between the threads.",
        ("AuditStore: one store (one writer chain) for all threads; appends that arrive while "
         "one transaction is written wait and share the next (one commit per batch, each "
         "caller answered once its record is committed). Raw: each thread its own "
         "connection, one `BEGIN IMMEDIATE` ... `COMMIT` per row (SQLite takes one writer at "
         "a time)."),
    ]
    return table
