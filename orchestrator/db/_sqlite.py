"""The SQLite back end: one file per store, opened the one way the project's files must be.

Directory 0700 and file 0600, created if missing; WAL with ``synchronous = NORMAL`` so several
processes can append while each committed write survives a process crash; a busy timeout so
writers wait for each other instead of failing; the store's schema applied (or a newer file
refused) before anything else, its version in ``PRAGMA user_version``. One connection per
store, used by any thread under a lock; a write transaction is ``BEGIN IMMEDIATE``, which holds
the whole file, so :meth:`Transaction.lock` has nothing left to do. A file opened read-only
(``mode=ro``) is only checked: its version not newer, the schema's tables there.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from orchestrator.db._api import Conflict, Database, Dialect, Rows, Schema
from orchestrator.errors import ConfigError, StoreMissing


def prepare(path: Path, what: str) -> None:
    """Create the directory (0700) and an empty database file (0600) if they are missing;
    :class:`ConfigError` naming the path if it cannot be (a file where the directory should
    be, a directory where the file should be, no permission)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make {path.parent} for the {what}: "
                          f"{exc.strerror or exc}") from None
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: the {what} must be a file")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the {what}: {exc.strerror or exc}") from None


def apply_schema(conn: sqlite3.Connection, schema: Schema) -> None:
    """Run the schema's (idempotent) DDL and stamp its version, in one transaction; refuse a
    file whose schema is newer than this code's."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > schema.version:
            raise ConfigError(f"{schema.what} schema version {found} is newer than this code "
                              f"({schema.version})")
        for statement in schema.statements(Dialect.SQLITE):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {schema.version}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect(path: Path, schema: Schema) -> sqlite3.Connection:
    """An open, prepared connection; :class:`ConfigError` naming the schema's ``what`` if the
    file is not a usable database of that kind."""
    prepare(path, schema.what)
    try:
        conn = sqlite3.connect(path, timeout=schema.busy_timeout, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is not a usable {schema.what}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(schema.busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        apply_schema(conn, schema)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"{path} is not a usable {schema.what}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(path: Path, schema: Schema) -> tuple[sqlite3.Connection, frozenset[str]]:
    """An existing file opened with ``mode=ro`` (nothing created or written) and its tables;
    :class:`ConfigError` naming the file if it is not a usable database of the schema's kind
    (:class:`StoreMissing` if there is none yet: no file, or not one of the schema's tables)."""
    if not path.is_file():
        raise StoreMissing(f"no {schema.what} at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                           timeout=schema.busy_timeout, check_same_thread=False)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = frozenset(name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"{path} is not a usable {schema.what}: {exc}") from exc
    if version > schema.version:
        conn.close()
        raise ConfigError(f"{path} is not a usable {schema.what}: schema version {version} is "
                          f"newer than this code ({schema.version})")
    if not schema.tables <= tables:
        conn.close()
        raise schema.lacking(path, tables)
    return conn, tables


class _Rows:
    """A statement's rows and row count, read at once: they stay readable after the
    transaction ends, as the interface promises (and a ``RETURNING`` statement is complete
    before ``COMMIT``)."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._rows = deque(cursor.fetchall() if cursor.description is not None else ())
        self.rowcount = cursor.rowcount

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = list(self._rows), deque()
        return rows


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return _Rows(self._conn.execute(sql, params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, params)

    def lock(self, key: str) -> None:
        """Nothing to do: a write transaction (``BEGIN IMMEDIATE``) holds the file."""


class SQLiteDatabase(Database):
    """One store's SQLite file: one connection, used by any thread under a lock."""

    dialect = Dialect.SQLITE

    def __init__(self, path: Path, schema: Schema, *, read_only: bool = False) -> None:
        super().__init__(schema)
        self._path = path
        self._lock = threading.Lock()
        self._tables: frozenset[str] | None = None  # None: the schema's, all of them
        if read_only:
            self._conn: sqlite3.Connection | None
            self._conn, self._tables = connect_read_only(path, schema)
        else:
            self._conn = connect(path, schema)

    @property
    def target(self) -> str:
        return str(self._path)

    @property
    def path(self) -> Path:
        return self._path

    def has_table(self, name: str) -> bool:
        return self._tables is None or name in self._tables

    def triggers(self) -> frozenset[str]:
        with self.transaction(write=False) as tx:
            rows = tx.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        return frozenset(name for (name,) in rows)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[_Transaction]:
        with self._lock:
            if self._conn is None:
                raise ValueError(f"{self.schema.what} is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield _Transaction(conn)
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:  # a constraint: the caller's answer
                _rollback(conn)
                raise Conflict(str(exc)) from exc
            except sqlite3.DatabaseError as exc:  # locked past the timeout, full disk, damage
                _rollback(conn)
                raise self.unavailable() from exc
            except BaseException:
                _rollback(conn)
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _rollback(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):  # a damaged file may refuse even this
        if conn.in_transaction:
            conn.execute("ROLLBACK")
