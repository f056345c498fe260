"""Benchmark 5: audit records per second into the default store, from 1, 2 and 4 processes.

Each writer process opens its own :class:`~orchestrator.audit.AuditStore` on one shared SQLite
file (as the auth server, the services and the workers do) and appends records like a
service's (a three-actor chain, scopes, context), each in its own committed transaction. The
baseline, measured the same way in the same run: a bare SQLite insert of the same content as
one JSON text per row, one committed transaction each, same journal settings (WAL,
``synchronous=NORMAL``, busy timeout).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._report import Table

WRITERS = (1, 2, 4)
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
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    rows = [json.dumps(record_fields(i), default=str) for i in range(count)]
    ready.put(1)
    go.wait(60)
    start = time.time()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw (content) VALUES (?)", (row,))
        conn.execute("COMMIT")
    out.put((start, time.time()))
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
        "AuditStore: validation, hash chain per writer, record + writer head in one "
        "`BEGIN IMMEDIATE` transaction. Raw: one JSON text per row, one transaction each.",
    ]
    return [table]
