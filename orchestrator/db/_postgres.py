"""The PostgreSQL back end: one database every store and every process shares, through psycopg 3
and a psycopg_pool connection pool per store.

* Placeholders: the stores write ``?``; they become psycopg's ``%s`` here (once per statement).
* Transactions: a write runs at READ COMMITTED and takes what it must serialise with
  :meth:`Transaction.lock` (``pg_advisory_xact_lock``, released at commit or rollback, across
  processes and hosts); a read runs at REPEATABLE READ, so all its statements see one snapshot.
  A lock waits at most the schema's busy timeout (``lock_timeout``), then the store is
  unavailable.
* Round trips: a transaction runs in psycopg's pipeline mode, so statements whose results are
  not read yet travel together: ``BEGIN`` goes with the first query, ``COMMIT`` with the last
  writes. Reading a result or a row count inside the transaction waits for everything sent
  before it (one round trip); read after the ``with`` block ends, it costs nothing more, so a
  transaction whose results are all read afterwards is one round trip, ``COMMIT`` included.
  The results are taken off the connection before it goes back to the pool.
* Writes begin ``READ WRITE``: a server that cannot write (a hot standby, a server in
  recovery) refuses at the first statement, so a check that the store can be written fails
  there rather than pass on a connection that only reads.
* Dead connections: a pooled connection that died while idle (its backend killed, the server
  restarted) has the server's goodbye waiting on its socket, or read by libpq already, with the
  connection's last reply (:mod:`orchestrator.db._pg_liveness`); both are checked without a
  round trip before use, and such a connection is dropped and another taken, up to the pool's
  size plus one. A connection lost inside a transaction raises :class:`ConnectionLost`: the
  commit may or may not have happened, and only the store knows how to tell.
* Schema: applied in one transaction under an advisory lock (so processes starting at once do
  not race on ``CREATE``); each store's version is a row of ``schema_versions``. A process
  applies a store's schema once per database URL: opening the same store again in that process
  only checks its version (no DDL: ``CREATE OR REPLACE TRIGGER`` locks the table against every
  other process's writes while it runs).
* Read-only (``open_database(url, schema, read_only=True)``, what ``audit verify`` uses): no
  DDL at all, nothing written. The version is only read (a newer one refused), the schema's
  tables must be there (:class:`ConfigError` otherwise, as for a SQLite file), and every
  transaction is ``READ ONLY`` (the session's default too), so the server refuses any write; a
  write transaction or statement is refused before it is sent (:class:`Unavailable`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from orchestrator.db._api import Conflict, Database, DatabaseUrl, Dialect, Schema, lock_key
from orchestrator.db._pg_liveness import ended_by_server, watch_goodbye
from orchestrator.db._pg_pipeline import PipelinedTransaction, translate
from orchestrator.errors import ConfigError

CONNECT_TIMEOUT_SECONDS = 5
SCHEMA_ATTEMPTS = 3
POOL_MAX_SIZE = 4
_VERSIONS = ("CREATE TABLE IF NOT EXISTS schema_versions "
             "(store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
# A read transaction: one snapshot; a read-only database's is READ ONLY as well.
_BEGIN_READ = {False: "BEGIN ISOLATION LEVEL REPEATABLE READ",
               True: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}
# The tables and the enabled triggers the stores' unqualified names reach (the search path).
_TABLES = ("SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p') "
           "AND c.relnamespace <> 'pg_catalog'::regnamespace AND pg_table_is_visible(c.oid)")
_TRIGGERS = ("SELECT t.tgname FROM pg_trigger t WHERE NOT t.tgisinternal "
             "AND t.tgenabled IN ('O', 'A') AND pg_table_is_visible(t.tgrelid)")
T = TypeVar("T")
# (URL, schema) pairs this process has applied: opened again, a store only checks its version.
_APPLIED: set[tuple[str, Schema]] = set()


@lru_cache(maxsize=512)
def describe(url: str) -> str:
    """The URL without its password (or anything else but user, host, port and database)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://?"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _setting(url: str) -> str:
    """`` (INFRABOT_...)``, the setting a :class:`DatabaseUrl` was read from; nothing for a URL
    given as such (a test's, a benchmark's): no setting holds it."""
    return f" ({url.source})" if isinstance(url, DatabaseUrl) else ""


def _without_secret(exc: BaseException, url: str) -> str:
    """The driver's first line, with the URL's user information taken out: libpq quotes the
    piece of a connection string it cannot parse, which may be the password."""
    line = _first_line(exc)
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    _, colon, password = userinfo.partition(":")
    if colon and password:
        for piece in sorted({userinfo, password, unquote(password)}, key=len, reverse=True):
            line = line.replace(piece, "***")
    return line


class PostgresDatabase(Database):
    """One store's view of a PostgreSQL database: a small pool of autocommit connections, each
    transaction begun and ended explicitly."""

    dialect = Dialect.POSTGRESQL

    def __init__(self, url: str, schema: Schema, *, read_only: bool = False) -> None:
        super().__init__(schema)
        self._target = describe(url)
        self._closed = threading.Event()
        self._read_only = read_only
        self._tables: frozenset[str] | None = None  # None: the schema's, all of them
        try:
            if read_only:
                self._tables = self._retrying(lambda: self._check_schema(url))
            else:
                self._retrying(lambda: self._apply_schema(
                    url, check_only=(url, schema) in _APPLIED))
                _APPLIED.add((url, schema))
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot reach the database at {self._target}{_setting(url)}: "
                              f"{_without_secret(exc, url)}") from None
        except psycopg.Error as exc:
            raise ConfigError(f"{self._target} is not a usable {schema.what}: "
                              f"{_without_secret(exc, url)}") from None
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=POOL_MAX_SIZE, open=False, timeout=schema.busy_timeout,
            name=f"infrabot-{schema.store}", configure=self._configure,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS})
        self._pool.open(wait=False)

    @property
    def target(self) -> str:
        return self._target

    def has_table(self, name: str) -> bool:
        return self._tables is None or name in self._tables

    def triggers(self) -> frozenset[str]:
        with self.transaction(write=False) as tx:
            rows = tx.execute(_TRIGGERS).fetchall()
        return frozenset(name for (name,) in rows)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[PipelinedTransaction]:
        if write and self._read_only:
            raise self.unavailable()
        conn = self._take()
        try:
            with conn.pipeline() as pipeline:
                conn.execute("BEGIN READ WRITE" if write else _BEGIN_READ[self._read_only])
                tx = PipelinedTransaction(conn, pipeline, self.schema.store)
                yield tx
                conn.execute("COMMIT")
            for rows in tx.results:
                rows.settle()
        except psycopg.errors.IntegrityError as exc:
            _rollback(conn)
            raise Conflict(_first_line(exc)) from exc
        except psycopg.Error as exc:  # lost, a lock wait past the timeout, the server's refusal
            _rollback(conn)
            raise self.unavailable(lost=_lost(conn, exc)) from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            self._pool.putconn(conn)  # a broken connection is discarded, not pooled

    def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._read_only:
            raise self.unavailable()
        conn = self._take()
        try:
            return conn.execute(translate(sql), params).fetchall()
        except psycopg.errors.IntegrityError as exc:
            raise Conflict(_first_line(exc)) from exc
        except psycopg.Error as exc:  # autocommitted: nothing to roll back
            raise self.unavailable(lost=_lost(conn, exc)) from exc
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    def _take(self) -> psycopg.Connection[Any]:
        """A live pooled connection; one that died while idle is dropped and another taken."""
        if self._closed.is_set():
            raise ValueError(f"{self.schema.what} is closed")
        for _ in range(POOL_MAX_SIZE + 1):
            try:
                conn = self._pool.getconn()
            except psycopg_pool.PoolTimeout as exc:
                raise self.unavailable() from exc
            if not ended_by_server(conn):
                return conn
            conn.close()
            self._pool.putconn(conn)  # closed: the pool discards it and opens another
        raise self.unavailable()

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        watch_goodbye(conn)
        conn.execute(f"SET lock_timeout = {int(self.schema.busy_timeout * 1000)}")
        if self._read_only:
            conn.execute("SET default_transaction_read_only = on")

    def _retrying(self, opening: Callable[[], T]) -> T:
        """A connection lost while the schema is applied or checked (its backend killed, the
        server restarting) is tried again, briefly; a server that refuses connections fails at
        once."""
        attempt = 1
        while True:
            try:
                return opening()
            except psycopg.OperationalError as exc:
                if attempt == SCHEMA_ATTEMPTS or _refused(exc):
                    raise
                time.sleep(0.1 * attempt)
                attempt += 1

    def _check_schema(self, url: str) -> frozenset[str]:
        """Read-only: the tables on the search path, the version not newer, the schema's tables
        there; no DDL, nothing written (a READ ONLY transaction). Returns the tables."""
        schema = self.schema
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            self._configure(conn)
            with conn.transaction():
                tables = frozenset(name for (name,) in conn.execute(_TABLES).fetchall())
                if "schema_versions" in tables:
                    self._found_version(conn)
        if not schema.tables <= tables:
            raise schema.lacking(self._target, tables)
        return tables

    def _apply_schema(self, url: str, *, check_only: bool) -> None:
        """The schema's DDL and version, in one transaction. ``check_only``: this process
        applied it already, so only the version is checked (no DDL, whose locks would stop
        every other process's writes to the tables meanwhile)."""
        schema = self.schema
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            self._configure(conn)
            if check_only and self._found_version(conn) == schema.version:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema"),))
                conn.execute(_VERSIONS)
                self._found_version(conn)
                for statement in schema.statements(Dialect.POSTGRESQL):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_versions (store, version) VALUES (%s, %s) "
                             "ON CONFLICT (store) DO UPDATE SET version = excluded.version",
                             (schema.store, schema.version))

    def _found_version(self, conn: psycopg.Connection[Any]) -> int | None:
        """The store's version in the database (None: none yet); ConfigError if it is newer."""
        schema = self.schema
        try:
            row = conn.execute("SELECT version FROM schema_versions WHERE store = %s",
                               (schema.store,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        if row is not None and row[0] > schema.version:
            raise ConfigError(f"{schema.what} schema version {row[0]} is newer than "
                              f"this code ({schema.version})")
        return None if row is None else int(row[0])


def _lost(conn: psycopg.Connection[Any], exc: psycopg.Error) -> bool:
    """The connection broke (rather than the server refusing one statement): no SQLSTATE, a
    connection exception (08), or the server ending the session (57P: shutdown, terminated)."""
    state = exc.sqlstate
    return conn.broken or conn.closed or state is None or state.startswith(("08", "57P"))


def _refused(exc: psycopg.OperationalError) -> bool:
    """Nothing answers, or the server said no: trying again at once would not help."""
    text = str(exc)
    return "Connection refused" in text or "does not exist" in text or "FATAL" in text


def _rollback(conn: psycopg.Connection[Any]) -> None:
    with suppress(psycopg.Error):  # a lost connection refuses even this
        if not conn.broken:
            conn.execute("ROLLBACK")
