"""The demo's insider attack on the audit trail, on a copy of the demo's own database.

The insider can write the database but does not hold the audit key. They rewrite one record
(the first denial becomes an allow) and then do what the keyless chain invites: recompute the
hash of every later record of that writer and the writer head, so the chain alone checks out.
``audit verify``'s check (:func:`orchestrator.audit.check_trail`, with the state directory's
published audit keys) must refuse the copy: the signed checkpoints name the old head. The copy
is made of the SQLite file; on PostgreSQL stores (``INFRABOT_DATABASE_URL``) the demo leaves this
attack out (:func:`shown`).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from infrabot.system import System
from orchestrator.audit import AnchorPolicy, AuditStore, TrailReport, check_trail, trusted_keys
from orchestrator.audit._chain import link_hash
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.audit._record import CONTENT_FIELDS
from orchestrator.audit._schema import JSON_FIELDS

_CONTENT = ", ".join(CONTENT_FIELDS)


def recompute_from(conn: sqlite3.Connection, writer: str, seq: int, **changes: Any) -> None:
    """Rewrite record ``seq`` of ``writer`` with ``changes``, then re-hash it and every later
    record of that writer and move the writer head: a chain that verifies without a key.
    ``conn`` must have the append-only triggers dropped (an insider can)."""
    rows = conn.execute(f"SELECT id, seq, prev_hash, {_CONTENT} FROM records "
                        "WHERE writer = ? AND seq >= ? ORDER BY seq", (writer, seq)).fetchall()
    prev: str | None = None
    for row_id, row_seq, prev_hash, *values in rows:
        content = dict(zip(CONTENT_FIELDS, values, strict=True))
        if row_seq == seq:
            content.update(changes)
        for name in JSON_FIELDS:
            content[name] = json.loads(content[name])
        prev = prev if prev is not None else prev_hash
        digest = link_hash(prev, content, writer, row_seq)
        stored = {k: json.dumps(v, ensure_ascii=False) if k in JSON_FIELDS else v
                  for k, v in content.items()}
        assignments = ", ".join(f"{name} = ?" for name in stored)
        conn.execute(f"UPDATE records SET {assignments}, prev_hash = ?, hash = ? WHERE id = ?",
                     [*stored.values(), prev, digest, row_id])
        prev = digest
    conn.execute("UPDATE writers SET last_hash = ? WHERE writer = ?", (prev, writer))


def _drop_guards(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")\
            .fetchall():
        conn.execute(f"DROP TRIGGER {name}")


def shown(system: System) -> bool:
    """Whether the audit trail is a SQLite file this attack can copy."""
    return isinstance(system.stack.settings.audit_target, Path)


def rewrite_a_copy(system: System) -> tuple[str, TrailReport]:
    """Anchor the trail, rewrite a copy as the insider would, and verify the copy. Returns
    what was rewritten and the verification report."""
    stack = system.stack
    if stack.checkpointer is not None:
        stack.checkpointer.checkpoint("requested")
    with tempfile.TemporaryDirectory(prefix="infrabot-audit-attack-") as tmp:
        copy = Path(tmp) / "audit.sqlite3"
        with closing(sqlite3.connect(f"{Path(stack.audit.target).resolve().as_uri()}?mode=ro",
                                     uri=True)) as source, \
                closing(sqlite3.connect(copy, isolation_level=None)) as target:
            source.backup(target)
            _drop_guards(target)
            victim = target.execute(
                "SELECT writer, seq, action FROM records WHERE decision = 'deny' ORDER BY id "
                "LIMIT 1").fetchone() or target.execute(
                "SELECT writer, seq, action FROM records ORDER BY id LIMIT 1").fetchone()
            writer, seq, action = victim
            recompute_from(target, writer, seq, decision="allow", reason="ok")
        keys = trusted_keys(stack.settings.audit_keys_dir / PUBLIC_FILE)
        with AuditStore(copy, read_only=True) as store:
            policy = AnchorPolicy(stack.settings.audit_checkpoint_records,
                                  stack.settings.audit_checkpoint_seconds)
            report = check_trail(store.snapshot(), keys, policy)
    return f"{action} (seq {seq}) deny → allow", report
