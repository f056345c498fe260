"""The client registry as a table of the stores' database (``INFRABOT_DATABASE_URL``): SQLite
(``sqlite:///dir`` → ``dir/clients.sqlite3``) or the PostgreSQL database the audit trail and the
run log share, through the same adapter (:mod:`orchestrator.db`).

One row per key; ``kid`` is the primary key, which is the "one key, one client" rule. Every
lookup is one indexed ``SELECT``, so a key registered or revoked by ``infrabot keys`` on any host
applies to the servers' next request. A registration takes the table's lock, checks every
offered key, then inserts the new ones: all or nothing, and two registrations of the same key at
once end with one row. A database that cannot be used raises
:class:`~orchestrator.errors.Unavailable` (``client_registry_unavailable``): the server answers
503 and authenticates nobody.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from orchestrator.authserver._registry_api import KeyInUse, RegisteredKey, keys_by_client
from orchestrator.db import Database, Dialect, Schema, Store, open_database
from orchestrator.errors import Unavailable
from orchestrator.identity import PublicKey

SCHEMA_VERSION = 1
_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS client_keys (
        kid TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        alg TEXT NOT NULL,
        added_at BIGINT NOT NULL,
        jwk TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS client_keys_client ON client_keys (client_id, added_at)",
)


def _statements(dialect: Dialect) -> Sequence[str]:
    return _STATEMENTS


SCHEMA = Schema(store="client_registry", what="client registry", version=SCHEMA_VERSION,
                statements=_statements, unavailable="client_registry_unavailable")
_COLUMNS = "client_id, kid, alg, added_at, jwk"


class SqlClientRegistry(Store):
    """The registry in ``target``'s ``client_keys`` table (a SQLite path or a PostgreSQL URL);
    thread-safe. Opening it applies the schema, or raises a one-line ConfigError."""

    def __init__(self, target: Path | str) -> None:
        self._db: Database = open_database(target, SCHEMA)

    def keys_of(self, client_id: str) -> Mapping[str, PublicKey]:
        rows = self._select(f"SELECT {_COLUMNS} FROM client_keys WHERE client_id = ?",
                            (client_id,))
        return keys_by_client(rows).get(client_id, {})

    def entries(self) -> list[RegisteredKey]:
        return self._select(f"SELECT {_COLUMNS} FROM client_keys "
                            "ORDER BY client_id, added_at, kid")

    def add(self, client_id: str, keys: Sequence[PublicKey], *, now: int) -> list[str]:
        added: list[str] = []
        with self._db.transaction(write=True) as tx:
            tx.lock("client_keys")
            for key in keys:
                row = tx.execute("SELECT client_id FROM client_keys WHERE kid = ?",
                                 (key.kid,)).fetchone()
                if row is not None and row[0] != client_id:
                    raise KeyInUse(f"key {key.kid} is already registered for {row[0]}; "
                                   "each client needs a key of its own")
                if row is None and key.kid not in added:
                    tx.execute(f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                               (client_id, key.kid, key.alg, now,
                                json.dumps(key.jwk, sort_keys=True)))
                    added.append(key.kid)
        return added

    def remove(self, client_id: str, kid: str) -> bool:
        with self._db.transaction(write=True) as tx:
            removed = tx.execute("DELETE FROM client_keys WHERE client_id = ? AND kid = ?",
                                 (client_id, kid)).rowcount
        return removed > 0

    def _select(self, sql: str, params: tuple[str, ...] = ()) -> list[RegisteredKey]:
        with self._db.transaction(write=False) as tx:
            found = tx.execute(sql, params)
        try:  # read after the transaction: on PostgreSQL one round trip, COMMIT included
            return [RegisteredKey(client_id=c, kid=k, alg=a, added_at=t, jwk=json.loads(j))
                    for c, k, a, t, j in found.fetchall()]
        except (ValueError, ValidationError):  # a row not written by this code
            raise Unavailable(f"the client registry in {self._db.target} is damaged",
                              reason="client_registry_unavailable") from None
