"""The security review's attack on a short trail, and the trail it is made on.

The attacker can write the database (not the audit key, not the state directory beside it):
they flip a deny to an allow, delete records, renumber the rest, re-hash the chain, move the
writer head, rewrite the times so the tail spans less than a checkpoint period, delete every
checkpoint and leave the guard triggers as they found them. What is left looks exactly like a
running writer's fresh unanchored tail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.audit import AnchorPolicy, AuditKeys, AuditStore, Checkpointer
from orchestrator.audit._chain import GENESIS_HASH, link_hash
from orchestrator.audit._record import CONTENT_FIELDS, format_time
from orchestrator.audit._schema import JSON_FIELDS
from tests.audit.conftest import NOW, record

EVERY_RECORDS, EVERY_SECONDS = 4, 10.0
POLICY = AnchorPolicy(EVERY_RECORDS, EVERY_SECONDS)  # the verifier's, as the writers'
_CONTENT = ", ".join(CONTENT_FIELDS)


def at(second: float) -> datetime:
    return datetime.fromtimestamp(NOW + second, UTC)


def healthy_trail(target: Path | str, keys: AuditKeys, records: int = 5) -> None:
    """``records`` records of writer ``svc``, 30 s apart (the second a deny), checkpoints every 4
    records and at shutdown: with 5, checkpoint 1 anchors seq 4 and checkpoint 2 seq 5."""
    with AuditStore(target, writer="svc") as store:
        checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                    every_records=EVERY_RECORDS,
                                    every_seconds=EVERY_SECONDS, clock=lambda: NOW + 200)
        store.anchor_with(checkpointer)
        for i in range(records):
            deny = {"decision": "deny", "reason": "insufficient_scope"} if i == 1 else {}
            store.append(record(resource=f"r-{i}", time=at(30 * i), **deny))
        checkpointer.close()


def rewrite(conn: Any, writer: str = "svc", delete: tuple[int, ...] = (3, 5)) -> None:
    """The attack, on a connection with the guards off: seq 2's deny becomes an allow, the
    records ``delete`` go, the rest are renumbered 1..n, timed a second apart, re-hashed, the
    head moved, and every checkpoint deleted."""
    rows = conn.execute(f"SELECT id, seq, {_CONTENT} FROM records WHERE writer = ? "
                        "ORDER BY seq", (writer,)).fetchall()
    for row_id, seq, *_ in rows:
        if seq in delete:
            conn.execute("DELETE FROM records WHERE id = ?", (row_id,))
    prev, seq = GENESIS_HASH, 0
    for row_id, old_seq, *values in rows:
        if old_seq in delete:
            continue
        seq += 1
        content = dict(zip(CONTENT_FIELDS, values, strict=True))
        for name in JSON_FIELDS:
            content[name] = json.loads(content[name])
        if old_seq == 2:
            content.update(decision="allow", reason="ok")
        content["time"] = format_time(at(seq))  # the span under the checkpoint period
        digest = link_hash(prev, content, writer, seq)
        stored = {k: json.dumps(v, ensure_ascii=False) if k in JSON_FIELDS else v
                  for k, v in content.items()}
        assignments = ", ".join(f"{name} = ?" for name in stored)
        conn.execute(f"UPDATE records SET {assignments}, seq = ?, prev_hash = ?, hash = ? "
                     "WHERE id = ?", [*stored.values(), seq, prev, digest, row_id])
        prev = digest
    conn.execute("UPDATE writers SET last_seq = ?, last_hash = ? WHERE writer = ?",
                 (seq, prev, writer))
    conn.execute("DELETE FROM checkpoints")
