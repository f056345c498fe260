"""The client registry as a table of the authorization server's database
(``INFRABOT_AUTH_DATABASE_URL``, else ``INFRABOT_DATABASE_URL``): SQLite (``sqlite:///dir`` →
``dir/clients.sqlite3``) or the PostgreSQL database it shares with the audit trail (and, on one
host without an auth database of its own, the run log), through the same adapter
(:mod:`orchestrator.db`).

One row per key; ``kid`` is the primary key, which is the "one key, one client" rule; a revoked
key's ``kid`` is a row of ``revoked_client_keys``, never registered again. Every
lookup is one indexed ``SELECT``, so a key registered or revoked by ``infrabot keys`` (on the
auth host, docs/deploy.md) applies to the servers' next request. A registration takes the table's lock, checks every
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

from orchestrator.authserver._registry_api import (
    RegisteredKey,
    RevokedKey,
    dropped_by_renewal,
    key_in_use,
    key_revoked,
    keys_by_client,
)
from orchestrator.db import Database, Dialect, Schema, Store, Transaction, open_database
from orchestrator.errors import Unavailable
from orchestrator.identity import PublicKey

SCHEMA_VERSION = 2  # 2: revoked_client_keys
_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS client_keys (
        kid TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        alg TEXT NOT NULL,
        added_at BIGINT NOT NULL,
        jwk TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS client_keys_client ON client_keys (client_id, added_at)",
    """CREATE TABLE IF NOT EXISTS revoked_client_keys (
        kid TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        revoked_at BIGINT NOT NULL
    )""",
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

    def entries(self, client_id: str | None = None) -> list[RegisteredKey]:
        if client_id is not None:
            return self._select(f"SELECT {_COLUMNS} FROM client_keys WHERE client_id = ? "
                                "ORDER BY added_at, kid", (client_id,))
        return self._select(f"SELECT {_COLUMNS} FROM client_keys "
                            "ORDER BY client_id, added_at, kid")

    def revoked(self) -> list[RevokedKey]:
        with self._db.transaction(write=False) as tx:
            found = tx.execute("SELECT client_id, kid, revoked_at FROM revoked_client_keys "
                               "ORDER BY client_id, revoked_at, kid")
        return [RevokedKey(client_id=c, kid=k, revoked_at=t) for c, k, t in found.fetchall()]

    def add(self, client_id: str, keys: Sequence[PublicKey], *, now: int) -> list[str]:
        added: list[str] = []
        with self._db.transaction(write=True) as tx:
            tx.lock("client_keys")
            known = {kid for kid in (key.kid for key in keys) if _owner(tx, kid, client_id)}
            for key in keys:
                if key.kid not in known:
                    _insert(tx, client_id, key, now)
                    known.add(key.kid)
                    added.append(key.kid)
        return added

    def renew(self, client_id: str, key: PublicKey, *, now: int, keep: int,
              since: int) -> None:
        with self._db.transaction(write=True) as tx:
            tx.lock("client_keys")
            _owner(tx, key.kid, client_id)
            rows = tx.execute(f"SELECT {_COLUMNS} FROM client_keys WHERE client_id = ?",
                              (client_id,)).fetchall()
            entries = [RegisteredKey(client_id=c, kid=k, alg=a, added_at=t, jwk={})
                       for c, k, a, t, _ in rows]
            for kid in sorted({key.kid} | dropped_by_renewal(entries, key.kid, keep=keep,
                                                             since=since)):
                tx.execute("DELETE FROM client_keys WHERE kid = ?", (kid,))
            _insert(tx, client_id, key, now)

    def remove(self, client_id: str, kid: str) -> bool:
        with self._db.transaction(write=True) as tx:
            removed = tx.execute("DELETE FROM client_keys WHERE client_id = ? AND kid = ?",
                                 (client_id, kid)).rowcount
        return removed > 0

    def revoke(self, client_id: str, kid: str, *, now: int, unregistered: bool = False) -> bool:
        with self._db.transaction(write=True) as tx:
            tx.lock("client_keys")
            removed = tx.execute("DELETE FROM client_keys WHERE client_id = ? AND kid = ?",
                                 (client_id, kid)).rowcount > 0
            if not removed and unregistered:  # unless some client holds it, or it is revoked
                removed = not any(tx.execute(f"SELECT 1 FROM {table} WHERE kid = ?",
                                             (kid,)).fetchone()
                                  for table in ("client_keys", "revoked_client_keys"))
            if removed:
                tx.execute("INSERT INTO revoked_client_keys (kid, client_id, revoked_at) "
                           "VALUES (?, ?, ?)", (kid, client_id, now))
        return removed

    def _select(self, sql: str, params: tuple[str, ...] = ()) -> list[RegisteredKey]:
        with self._db.transaction(write=False) as tx:
            found = tx.execute(sql, params)
        try:  # read after the transaction: on PostgreSQL one round trip, COMMIT included
            return [RegisteredKey(client_id=c, kid=k, alg=a, added_at=t, jwk=json.loads(j))
                    for c, k, a, t, j in found.fetchall()]
        except (ValueError, ValidationError):  # a row not written by this code
            raise Unavailable(f"the client registry in {self._db.target} is damaged",
                              reason="client_registry_unavailable") from None


def _owner(tx: Transaction, kid: str, client_id: str) -> bool:
    """Whether ``kid`` is registered for ``client_id`` already; :class:`KeyRevoked` if it was
    revoked, :class:`KeyInUse` if it is another client's (under the table's lock)."""
    revoked = tx.execute("SELECT client_id FROM revoked_client_keys WHERE kid = ?",
                         (kid,)).fetchone()
    if revoked is not None:
        raise key_revoked(kid, revoked[0])
    row = tx.execute("SELECT client_id FROM client_keys WHERE kid = ?", (kid,)).fetchone()
    if row is not None and row[0] != client_id:
        raise key_in_use(kid, row[0])
    return row is not None


def _insert(tx: Transaction, client_id: str, key: PublicKey, now: int) -> None:
    tx.execute(f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
               (client_id, key.kid, key.alg, now, json.dumps(key.jwk, sort_keys=True)))
