"""Benchmark 5: audit records per second into the default store, from 1, 2 and 4 processes,
and from 1, 4 and 16 threads of one process (group commit).

Each writer process opens its own :class:`~orchestrator.audit.AuditStore` on one shared SQLite
file (as the auth server, the services and the workers do) and appends records like a
service's (a three-actor chain, scopes, context), each acknowledged only once committed. The
baseline, measured the same way in the same run: a bare SQLite insert of the same content as
one JSON text per row, one committed transaction each, same journal settings (WAL,
``synchronous=NORMAL``, busy timeout). A second baseline, labelled as such, is the honest
lower bound of the store's own table: the same columns (the chain fields and every content
column) inserted bare into a table with the store's five query indexes, one committed
transaction per row, no chain, no head, no check. The threads table is what group commit
changes: the threads of a process (serve's request threads, each serving one request at a time)
share one store, and the appends that arrive while one is written go together in the next
transaction; the bare baselines give each thread its own connection, one committed transaction
per row.
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
from orchestrator.audit._record import CONTENT_FIELDS
from orchestrator.audit._schema import JSON_FIELDS, statements
from orchestrator.db import Dialect

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


INDEXED_COLUMNS = ("writer", "seq", "prev_hash", "hash", *CONTENT_FIELDS)


def indexed_ddl(dialect: Dialect) -> list[str]:
    """The store's ``records`` table and its five query indexes, as the schema has them, and
    nothing else (no writers table, no triggers)."""
    return [sql for sql in statements(dialect)
            if sql.lstrip().startswith(("CREATE TABLE IF NOT EXISTS records", "CREATE INDEX"))]


def indexed_rows(count: int) -> list[list[Any]]:
    """The columns the store writes for benchmark records: chain fields (fixed-width stand-ins,
    no hashing) and the content with its JSON fields as JSON text."""
    rows = []
    for i in range(count):
        content = record_fields(i)
        content["time"] = content["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(["bench:indexed", i + 1, "0" * 64, f"{i:064x}", *(
            json.dumps(content[name], ensure_ascii=False) if name in JSON_FIELDS
            else content[name]
            for name in CONTENT_FIELDS)])
    return rows


INDEXED_INSERT = (f"INSERT INTO records ({', '.join(INDEXED_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(INDEXED_COLUMNS))})")


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


def _raw_writer(path: Path, count: int, ready: Any, go: Any, out: Any, *,
                indexed: bool = False) -> None:
    conn = _raw_connection(path)
    rows: list[Any] = (indexed_rows(count) if indexed else
                       [json.dumps(record_fields(i), default=str) for i in range(count)])
    insert = _indexed_insert if indexed else _raw_insert
    ready.put(1)
    go.wait(60)
    start = time.time()
    for row in rows:
        insert(conn, row)
    out.put((start, time.time()))
    conn.close()


def _indexed_insert(conn: sqlite3.Connection, row: list[Any]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(INDEXED_INSERT, row)
    conn.execute("COMMIT")


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


def _raw_threads(threads: int, path: Path, count: int, ready: Any, go: Any, out: Any, *,
                 indexed: bool = False) -> None:
    rows: list[Any] = (indexed_rows(count) if indexed else
                       [json.dumps(record_fields(i), default=str) for i in range(count)])
    insert = _indexed_insert if indexed else _raw_insert
    conns = [_raw_connection(path) for _ in range(threads)]

    def work(index: int) -> None:
        for row in rows[index::threads]:
            insert(conns[index], row)

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
            raw: tuple[Any, Path | str], indexed: tuple[Any, Path | str]) -> None:
    """One row: ``count`` store writers, then ``count`` raw writers, then ``count`` writers of
    the bare indexed insert (each a target function and where it writes), and a verify of what
    the store writers wrote."""
    from orchestrator.audit import AuditStore

    AuditStore(store[1]).close()  # the schema, created once before the writers
    store_rate = _rate(store[0], store[1], count, records)
    raw_rate = _rate(raw[0], raw[1], count, records)
    indexed_rate = _rate(indexed[0], indexed[1], count, records)
    with AuditStore(store[1]) as opened:
        report = opened.verify()
    table.add(count, f"{store_rate:,.0f}", f"{raw_rate:,.0f}", f"{store_rate / raw_rate:.2f}",
              f"{indexed_rate:,.0f}", f"{store_rate / indexed_rate:.2f}",
              f"{'intact' if report.ok else 'BROKEN'} ({count * records} records)")


INDEXED_NOTE = ("Extra baseline, not the goal's: the bare insert of the same columns (chain "
                "fields and content) into a table with the store's five query indexes, one "
                "committed transaction per row: the cost of the store's table itself, with no "
                "chain, head or check.")


def run(*, records: int = 2000, writers: tuple[int, ...] = WRITERS,
        work: Path | None = None) -> list[Table]:
    """``records`` per writer process, for each process count."""
    table = Table("Audit: records per second into AuditStore (SQLite), N writer processes",
                  ["writers", "AuditStore records/s", "raw SQLite inserts/s",
                   "AuditStore / raw", "extra: bare insert, same columns + 5 indexes, /s",
                   "AuditStore / that", "verify of the file"])
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=work) as tmp:
        for count in writers:
            store_path = Path(tmp) / f"audit-{count}.sqlite3"
            raw_path, indexed_path = _baselines(Path(tmp), count)
            measure(table, count, records, (_store_writer, store_path), (_raw_writer, raw_path),
                    (partial(_raw_writer, indexed=True), indexed_path))
    table.notes += [
        SPAN_NOTE.format(records=records),
        ("AuditStore: hash chain per writer, record + writer head in one `BEGIN IMMEDIATE` "
         "transaction (one writer thread per process: each record is its own transaction). "
         "Raw: one JSON text per row, one transaction each."),
        INDEXED_NOTE,
    ]
    return [table, _threads_table(records, work)]


def _baselines(tmp: Path, count: int) -> tuple[Path, Path]:
    """Two fresh files in WAL mode: the raw table, and the store's table with its indexes."""
    raw_path, indexed_path = tmp / f"raw-{count}.sqlite3", tmp / f"indexed-{count}.sqlite3"
    with sqlite3.connect(raw_path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, content TEXT)")
    with sqlite3.connect(indexed_path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for sql in indexed_ddl(Dialect.SQLITE):
            conn.execute(sql)
    return raw_path, indexed_path


def _threads_table(records: int, work: Path | None) -> Table:
    table = Table("Audit: group commit, one process, N threads appending to one AuditStore "
                  "(SQLite)", ["threads", "AuditStore records/s",
                               "raw inserts/s (a connection per thread)", "AuditStore / raw",
                               "extra: bare insert, same columns + 5 indexes, /s",
                               "AuditStore / that"])
    with tempfile.TemporaryDirectory(prefix="bench-audit-threads-", dir=work) as tmp:
        for count in THREADS:
            store_path = Path(tmp) / f"audit-{count}.sqlite3"
            raw_path, indexed_path = _baselines(Path(tmp), count)
            from orchestrator.audit import AuditStore

            AuditStore(store_path).close()  # the schema, before the clock starts
            store = _rate(partial(store_threads, count), store_path, 1, records)
            raw = _rate(partial(_raw_threads, count), raw_path, 1, records)
            indexed = _rate(partial(_raw_threads, count, indexed=True), indexed_path, 1, records)
            table.add(count, f"{store:,.0f}", f"{raw:,.0f}", f"{store / raw:.2f}",
                      f"{indexed:,.0f}", f"{store / indexed:.2f}")
    table.notes += [
        f"{records} records in one process, shared out between the threads.",
        ("AuditStore: one store (one writer chain) for all threads; appends that arrive while "
         "one transaction is written wait and share the next (one commit per batch, each "
         "caller answered once its record is committed). Raw: each thread its own "
         "connection, one `BEGIN IMMEDIATE` ... `COMMIT` per row (SQLite takes one writer at "
         "a time)."),
        INDEXED_NOTE.replace("one committed", "each thread its own connection, one committed"),
    ]
    return table
