"""The adapter's interface: what a store may use of its database, whichever back end it is.

A store (:class:`~orchestrator.audit.AuditStore`, :class:`~orchestrator.runs.RunStore`) is
written once against :class:`Database` and never imports a driver. It opens its database with
:func:`orchestrator.db.open_database` and a :class:`Schema`, and works in transactions::

    with db.transaction(write=True) as tx:
        tx.lock(f"run:{run_id}")          # serialise with every process writing this run
        tx.execute("INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT DO NOTHING", (a, b))

The SQL is the portable subset both engines run (SQLite >= 3.35, PostgreSQL >= 14): ``?``
placeholders (translated for PostgreSQL), ``ON CONFLICT``, ``RETURNING``, ``COALESCE``; a
schema's DDL may differ per :class:`Dialect` (identity columns, triggers). The back ends:

* a :class:`~pathlib.Path`: a SQLite file (:mod:`orchestrator.db._sqlite`), one per store, its
  schema version in ``PRAGMA user_version``;
* a ``postgresql://`` URL: one PostgreSQL database every store shares
  (:mod:`orchestrator.db._postgres`), each store's schema version a row of ``schema_versions``.

Errors: a unique-key violation raises :class:`Conflict` (the store's answer, e.g. ``RunExists``);
a database that cannot be used raises :class:`~orchestrator.errors.Unavailable` with the
schema's reason; a connection lost inside a write raises :class:`ConnectionLost`, after which the
write may or may not have been committed; a database that cannot be opened at all (unreachable,
not a database, a newer schema) raises :class:`~orchestrator.errors.ConfigError`, one line (an
unreachable PostgreSQL database named by the setting its :class:`DatabaseUrl` came from).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self

from orchestrator.errors import ConfigError, InfraBotError, StoreMissing, Unavailable

# A trigger a schema's DDL creates: ``CREATE [OR REPLACE] TRIGGER [IF NOT EXISTS] name``.
_TRIGGER = re.compile(r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
                      re.IGNORECASE)


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class DatabaseUrl(str):
    """A ``postgresql://`` URL that knows the setting it was read from, so that a database that
    cannot be opened is named by the variable to fix: ``setting`` holds it, and ``instead_of``
    (if any) is the unset one it stands in for (the auth database's
    ``INFRABOT_AUTH_DATABASE_URL``, which falls back to ``INFRABOT_DATABASE_URL``). Everywhere
    else it is the URL (a ``str``); a plain ``str`` URL names no setting. Made by the settings
    (:class:`~orchestrator.config.Settings`' ``*_target``), never guessed from the URL."""

    setting: str
    instead_of: str | None

    def __new__(cls, url: str, setting: str, instead_of: str | None = None) -> Self:
        made = super().__new__(cls, url)
        made.setting, made.instead_of = setting, instead_of
        return made

    def __getnewargs__(self) -> tuple[str, str, str | None]:  # type: ignore[override]
        return str(self), self.setting, self.instead_of  # a copy or a pickle keeps the setting

    @property
    def source(self) -> str:
        """The setting, as a message names it."""
        if self.instead_of is None:
            return self.setting
        return f"{self.setting}, in place of {self.instead_of}, which is unset"


@dataclass(frozen=True)
class Schema:
    """What a store needs of its database.

    ``store`` names it in the PostgreSQL version table, ``what`` in messages (``audit
    database``); ``statements`` is its idempotent DDL for a dialect; ``unavailable`` the reason
    code of the :class:`Unavailable` its failures raise; ``busy_timeout`` how long a write waits
    for another writer's lock (seconds); ``tables`` the tables a database of this kind must
    already have when it is opened read-only (:func:`orchestrator.db.open_database`).
    """

    store: str
    what: str
    version: int
    statements: Callable[[Dialect], Sequence[str]]
    unavailable: str = Unavailable.reason
    busy_timeout: float = 5.0
    tables: frozenset[str] = frozenset()

    def lacking(self, where: object, found: frozenset[str]) -> ConfigError:
        """What a database at ``where`` opened read-only, holding ``found`` but not every one
        of :attr:`tables`, is: :class:`StoreMissing` with none of them (not made yet: its owner
        makes it), a plain :class:`ConfigError` with some (damaged)."""
        error = StoreMissing if not self.tables & found else ConfigError
        return error(f"{where} is not a usable {self.what}: it has no {self.store} tables")


class Conflict(InfraBotError):
    """A write broke a unique key: the caller decides what that means."""

    reason = "conflict"


class ConnectionLost(Unavailable):
    """The connection to the database broke inside a transaction: whether its commit happened
    is unknown until the caller looks."""


class Rows(Protocol):
    """What :meth:`Transaction.execute` returns: its rows and row count, readable inside the
    transaction and after it ends. Read after the ``with`` block, they cost no round trip of
    their own on PostgreSQL: a transaction whose results are all read afterwards travels as
    one round trip, ``COMMIT`` included."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    """One open transaction: committed when its ``with`` block ends, rolled back on an error."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement with ``?`` placeholders."""
        ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one statement (no result rows) once per parameter set, in order: one prepared
        statement, and on PostgreSQL no round trip of its own. A failure of any one fails the
        transaction."""
        ...

    def lock(self, key: str) -> None:
        """Hold ``key`` until this transaction ends: every other transaction, in any process on
        any host, that locks the same key waits. (A SQLite write transaction already holds the
        whole file.)"""
        ...


def lock_key(name: str) -> int:
    """The signed 64-bit key of the PostgreSQL advisory lock that :meth:`Transaction.lock` takes
    for ``f"{schema.store}:{key}"``: what a function in the server takes to hold the same lock."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


class Database(ABC):
    """An open database of one :class:`Schema`; thread-safe; close it, or use ``with``."""

    dialect: Dialect

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    @property
    @abstractmethod
    def target(self) -> str:
        """Where it is, for messages: a file path or the URL without its password."""

    @abstractmethod
    def transaction(self, *, write: bool) -> AbstractContextManager[Transaction]:
        """A write transaction (``write=True``) or a read transaction that sees one consistent
        snapshot for all its statements."""

    def statement(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One write statement in a transaction of its own, and its rows: on PostgreSQL sent
        alone (autocommitted: no ``BEGIN``, no ``COMMIT``, one statement for the driver to
        handle); failures as a write transaction's (:class:`ConnectionLost` when the connection
        broke: the commit is unknown)."""
        with self.transaction(write=True) as tx:
            rows = tx.execute(sql, params)
        return rows.fetchall()

    def has_table(self, name: str) -> bool:
        """Whether the table exists. Always, once the schema was applied; only a database
        opened read-only may lack one (older than a table added without a version bump, or
        dropped)."""
        return True

    def missing_triggers(self) -> list[str]:
        """The triggers the schema's DDL creates that the database does not have, or has
        disabled (PostgreSQL), sorted: every store creates them with its tables, so only a
        change made outside the stores removes one."""
        expected = {found[1] for sql in self.schema.statements(self.dialect)
                    if (found := _TRIGGER.match(sql))}
        return sorted(expected - self.triggers())

    @abstractmethod
    def triggers(self) -> frozenset[str]:
        """The names of the enabled triggers on the tables of this database (its schema, on
        PostgreSQL), read in a read transaction."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections; idempotent. Use afterwards raises ValueError."""

    def unavailable(self, *, lost: bool = False) -> Unavailable:
        """The error a failed use raises; ``lost``: the connection broke inside a transaction."""
        kind = ConnectionLost if lost else Unavailable
        return kind(f"{self.schema.what} cannot be used", reason=self.schema.unavailable)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Store:
    """What every store built on a :class:`Database` shares: closing it, or a ``with`` block."""

    _db: Database

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
