"""Where the audit trail and the run log live: SQLite files or one PostgreSQL database, behind one
small adapter (:mod:`orchestrator.db._api`) that the stores are written against once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.db._api import (
    Conflict,
    ConnectionLost,
    Database,
    DatabaseUrl,
    Dialect,
    Rows,
    Schema,
    Store,
    Transaction,
    lock_key,
)
from orchestrator.db._sqlite import SQLiteDatabase

__all__ = [
    "Conflict",
    "ConnectionLost",
    "Database",
    "DatabaseUrl",
    "Dialect",
    "Rows",
    "Schema",
    "Store",
    "Transaction",
    "lock_key",
    "open_database",
    "store_target",
]


def open_database(target: Path | str, schema: Schema, *, read_only: bool = False) -> Database:
    """The database at ``target`` (a SQLite file path, or a ``postgresql://`` URL), its schema
    applied; :class:`~orchestrator.errors.ConfigError` (one line) if it cannot be, naming the
    setting the URL came from when it is a :class:`DatabaseUrl` (never its password).

    ``read_only``: an existing database opened without changing it, for checking it (``audit
    verify``): no schema applied (not even on PostgreSQL), nothing written (a SQLite file
    opened ``mode=ro``; PostgreSQL transactions ``READ ONLY``); ConfigError if its version is
    newer or the schema's tables are not there."""
    if isinstance(target, str):
        # Deferred: only a process that uses PostgreSQL pays for loading its driver (~150 ms).
        from orchestrator.db._postgres import PostgresDatabase

        return PostgresDatabase(target, schema, read_only=read_only)
    return SQLiteDatabase(Path(target), schema, read_only=read_only)


def store_target(default: Path, url: str | None, setting: str,
                 instead_of: str | None = None) -> Path | str:
    """Where a store is, given the value ``url`` of the database ``setting`` that names it:
    unset (None), ``default`` (its own file in the state directory); ``sqlite:///dir`` (or
    SQLAlchemy's ``sqlite:////dir``), ``dir/`` and ``default``'s name; a PostgreSQL URL, as a
    :class:`DatabaseUrl` naming ``setting`` (and ``instead_of``, the unset setting it stands
    in for), so that a database that cannot be opened is named by the variable to fix."""
    if url is None:
        return default
    if url.startswith("sqlite:"):
        return Path("/" + urlsplit(url).path.lstrip("/")) / default.name
    return DatabaseUrl(url, setting, instead_of)
