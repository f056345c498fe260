"""Benchmark 7: audit records per second into the store on PostgreSQL, from 1, 2 and 4 processes,
and from 1, 4 and 16 threads of one process (group commit).

Each writer process opens its own :class:`~orchestrator.audit.AuditStore` on one PostgreSQL
database (as serve, the services and the workers do on many hosts) and appends the records of
benchmark 5 (a three-actor chain, scopes, context), each in its own committed transaction. The
baseline, measured the same way in the same run: a bare PostgreSQL insert of the same content,
one JSON text per row, each its own autocommitted statement, from one psycopg connection per
process (per thread, in the threads table). An extra baseline, labelled as such: the same columns
inserted bare into the store's table with its five query indexes (in a schema of its own), the
same way. The threads table is what group commit changes: the
threads of a process (serve's request threads) share one store, and the appends that arrive
while one is written go together in the next transaction.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import psycopg

from bench._postgres import fresh_schema
from bench._report import Table
from bench.audit import (
    INDEXED_INSERT,
    INDEXED_NOTE,
    SPAN_NOTE,
    WRITERS,
    _rate,
    _store_writer,
    in_threads,
    indexed_ddl,
    indexed_rows,
    measure,
    record_fields,
    store_threads,
)
from orchestrator.db import Dialect

THREADS = (1, 4, 16)


_RAW_INSERT = "INSERT INTO raw (content) VALUES (%s)"
_INDEXED_INSERT = INDEXED_INSERT.replace("?", "%s")


def _bare(count: int, indexed: bool) -> tuple[str, list[Any]]:
    """The bare statement and its rows: one JSON text each, or the store's columns."""
    if indexed:
        return _INDEXED_INSERT, indexed_rows(count)
    return _RAW_INSERT, [(json.dumps(record_fields(i), default=str),) for i in range(count)]


def _raw_writer(url: str, count: int, ready: Any, go: Any, out: Any, *,
                indexed: bool = False) -> None:
    sql, rows = _bare(count, indexed)
    with psycopg.connect(url, autocommit=True) as conn:
        ready.put(1)
        go.wait(60)
        start = time.time()
        for row in rows:
            conn.execute(sql, row)
        out.put((start, time.time()))


def _raw_threads(threads: int, url: str, count: int, ready: Any, go: Any, out: Any, *,
                 indexed: bool = False) -> None:
    sql, rows = _bare(count, indexed)
    conns = [psycopg.connect(url, autocommit=True) for _ in range(threads)]

    def work(index: int) -> None:
        for row in rows[index::threads]:
            conns[index].execute(sql, row)

    try:
        in_threads(threads, work, ready, go, out)
    finally:
        for conn in conns:
            conn.close()


def run(database_url: str, *, records: int = 1000, writers: tuple[int, ...] = WRITERS,
        threads: tuple[int, ...] = THREADS) -> list[Table]:
    """``records`` per writer process, for each process count; every count in a fresh schema."""
    table = Table("Audit on PostgreSQL: records per second into AuditStore, N writer processes",
                  ["writers", "AuditStore records/s", "bare PostgreSQL inserts/s",
                   "AuditStore / bare", "extra: bare insert, same columns + 5 indexes, /s",
                   "AuditStore / that", "verify"])
    for count in writers:
        with fresh_schema(database_url) as url, fresh_schema(database_url) as indexed_url:
            _bare_tables(url, indexed_url)
            measure(table, count, records, (_store_writer, url), (_raw_writer, url),
                    (partial(_raw_writer, indexed=True), indexed_url))
    table.notes += [
        SPAN_NOTE.format(records=records),
        ("AuditStore: validation, hash chain per writer (head kept in the process), one "
        "autocommitted statement per batch through a psycopg_pool connection: the schema's "
        "function audit_append_batch, given the batch as one JSON array (the advisory lock on "
        "the writer, the records inserted where the head is the one the batch follows, the "
        "head moved a record at a time, the batch's ids read back; the first append of a "
        "process, which reads the head, sends these as statements in one pipelined "
        "transaction); appends that arrive while "
        "one is written share the next batch (group commit: one writer thread per "
        "process here, so each record is its own). Bare: one autocommitted INSERT (1 round "
        "trip) of one JSON text per row. PostgreSQL on loopback, synchronous_commit as the "
        "server has it."),
        INDEXED_NOTE,
    ]
    return [table, _threads_table(database_url, records, threads)]


def _bare_tables(url: str, indexed_url: str) -> None:
    """The raw table in ``url`` (beside the store's), the store's indexed table alone in
    ``indexed_url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw (id BIGINT GENERATED ALWAYS AS IDENTITY "
                     "PRIMARY KEY, content TEXT NOT NULL)")
    with psycopg.connect(indexed_url, autocommit=True) as conn:
        for sql in indexed_ddl(Dialect.POSTGRESQL):
            conn.execute(sql)


def _threads_table(database_url: str, records: int, threads: tuple[int, ...]) -> Table:
    table = Table("Audit on PostgreSQL: group commit, one process, N threads appending to one "
                  "AuditStore", ["threads", "AuditStore records/s", ("bare inserts/s "
                                 "(a connection per thread)"), "AuditStore / bare",
                                 "extra: bare insert, same columns + 5 indexes, /s",
                                 "AuditStore / that"])
    for count in threads:
        with fresh_schema(database_url) as url, fresh_schema(database_url) as indexed_url:
            _bare_tables(url, indexed_url)
            from orchestrator.audit import AuditStore

            AuditStore(url).close()  # the schema, before the clock starts
            store = _rate(partial(store_threads, count), url, 1, records)
            bare = _rate(partial(_raw_threads, count), url, 1, records)
            indexed = _rate(partial(_raw_threads, count, indexed=True), indexed_url, 1, records)
        table.add(count, f"{store:,.0f}", f"{bare:,.0f}", f"{store / bare:.2f}",
                  f"{indexed:,.0f}", f"{store / indexed:.2f}")
    table.notes += [
        f"{records} records in one process, shared out between the threads.",
        ("AuditStore: one store (one writer chain) for all threads; appends that arrive while "
        "one transaction is written wait and share the next (one commit each batch, each "
        "caller answered once its record is committed). Bare: each thread its own "
        "connection, one autocommitted INSERT per row (PostgreSQL groups concurrent "
        "commits' WAL flushes itself)."),
        INDEXED_NOTE.replace("one committed", "each thread its own connection, one committed"),
    ]
    return table
