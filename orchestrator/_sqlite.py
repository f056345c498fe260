"""Opening the project's SQLite files (audit trail, run log) the one way they must be opened.

Directory 0700 and file 0600, created if missing; WAL with ``synchronous = NORMAL`` so several
processes can append while each committed write survives a process crash; a busy timeout so
writers wait for each other instead of failing; autocommit mode, so every store chooses its own
transactions; and the store's schema applied (or a newer file refused) before anything else.
:class:`SQLiteFile` is what both stores share: the one connection, its lock, and closing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from orchestrator.errors import ConfigError


def prepare(path: Path) -> None:
    """Create the directory (0700) and an empty database file (0600) if they are missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def apply_schema(conn: sqlite3.Connection, statements: Sequence[str], version: int,
                 what: str) -> None:
    """Run ``statements`` (idempotent DDL) and stamp ``version``, in one transaction; refuse a
    file whose schema is newer than this code's."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise ConfigError(f"{what} schema version {found} is newer than this code "
                              f"({version})")
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect(path: Path, *, busy_timeout: float, statements: Sequence[str], version: int,
            what: str) -> sqlite3.Connection:
    """An open, prepared connection; :class:`ConfigError` naming ``what`` if the file is not
    a usable database of that kind."""
    prepare(path)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        apply_schema(conn, statements, version, what)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"{path} is not a usable {what}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteFile:
    """One open connection to a project SQLite file, used by any thread under :attr:`_lock`;
    closed by :meth:`close` or at the end of a ``with`` block. A subclass names what it holds
    (:attr:`what`), for the error a use after close raises."""

    what = "database"

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = conn

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        """The open connection (the caller holds the lock); ValueError once closed."""
        if self._conn is None:
            raise ValueError(f"{self.what} is closed")
        return self._conn
