"""Where the audit trail and the run log live: SQLite files or one PostgreSQL database, behind one
small adapter (:mod:`orchestrator.db._api`) that the stores are written against once."""

from __future__ import annotations

from pathlib import Path

from orchestrator.db._api import (
    Conflict,
    ConnectionLost,
    Database,
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
    "Dialect",
    "Rows",
    "Schema",
    "Store",
    "Transaction",
    "lock_key",
    "open_database",
]


def open_database(target: Path | str, schema: Schema, *, read_only: bool = False) -> Database:
    """The database at ``target`` (a SQLite file path, or a ``postgresql://`` URL), its schema
    applied; :class:`~orchestrator.errors.ConfigError` (one line) if it cannot be.

    ``read_only``: an existing database opened without changing it, for checking it (``audit
    verify``): no schema applied (not even on PostgreSQL), nothing written (a SQLite file
    opened ``mode=ro``; PostgreSQL transactions ``READ ONLY``); ConfigError if its version is
    newer or the schema's tables are not there."""
    if isinstance(target, str):
        # Deferred: only a process that uses PostgreSQL pays for loading its driver (~150 ms).
        from orchestrator.db._postgres import PostgresDatabase

        return PostgresDatabase(target, schema, read_only=read_only)
    return SQLiteDatabase(Path(target), schema, read_only=read_only)
