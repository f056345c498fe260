"""One PostgreSQL transaction in psycopg's pipeline mode (:mod:`orchestrator.db._postgres`):
statements whose results are not read yet travel together, and results read after the
transaction ended cost no round trip."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import psycopg

from orchestrator.db._api import Rows, lock_key


def translate(sql: str) -> str:
    """``?`` placeholders as psycopg's (and a literal ``%`` escaped)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PipelinedRows:
    """A cursor whose row count, like its rows, waits for the pipeline's results while its
    transaction is open, and is read from what the transaction kept once it ended."""

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline: psycopg.Pipeline | None = pipeline
        self._rows: deque[Any] = deque()
        self._rowcount = -1

    def settle(self) -> None:
        """Keep what is left of the result (the pipeline has been synced): the connection goes
        back to the pool and must not be read from by this cursor again."""
        if self._pipeline is None:
            return
        self._pipeline = None
        self._rowcount = self._cursor.rowcount
        self._rows = deque(self._cursor.fetchall()) if self._cursor.pgresult is not None \
            and self._cursor.description is not None else deque()

    @property
    def rowcount(self) -> int:
        if self._pipeline is None:
            return self._rowcount
        self._pipeline.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        if self._pipeline is None:
            return self._rows.popleft() if self._rows else None
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        if self._pipeline is None:
            rows, self._rows = list(self._rows), deque()
            return rows
        return self._cursor.fetchall()


class PipelinedTransaction:
    def __init__(self, conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline,
                 store: str) -> None:
        self._conn = conn
        self._pipeline = pipeline
        self._store = store
        self.results: list[PipelinedRows] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        cursor = (self._conn.execute(sql) if not params
                  else self._conn.execute(translate(sql), params))
        rows = PipelinedRows(cursor, self._pipeline)
        self.results.append(rows)
        return rows

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Sent in the pipeline like any statement (psycopg pipelines ``executemany``); nothing
        to read back, so nothing waits for it."""
        self._conn.cursor().executemany(translate(sql), params)

    def lock(self, key: str) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"{self._store}:{key}"),))
