"""The per-writer hash chain.

Every writer (one per store instance, so one per process unless named) numbers its records
``seq = 1, 2, 3 ...`` and links each to the previous one::

    hash = SHA-256( prev_hash || canonical_json({"record": content, "writer": w, "seq": n}) )

with ``prev_hash`` the writer's previous ``hash`` (64 zeros for ``seq`` 1). The ``writers`` table
keeps each writer's head (last seq, last hash) in the same transaction as the append, so losing
the tail of a chain is as visible as losing its middle.

The chain is keyless: it proves the records are as they were appended *unless* someone with
write access recomputed the chain. An attacker who rewrites a writer's chain from some record
onward **and** updates that writer's head is not detected by the chain alone; the signed
checkpoints (:mod:`orchestrator.audit._checkpoint`, checked by :mod:`orchestrator.audit._anchor`)
anchor heads with a key the database does not hold, and catch that. See docs/audit.md.
"""

from __future__ import annotations

import hashlib
from typing import Any

from orchestrator.audit._record import canonical_json

GENESIS_HASH = "0" * 64


def link_hash(prev_hash: str, content: dict[str, Any], writer: str, seq: int) -> str:
    """The hash of one record, given its content (:meth:`AuditRecord.content`) and its place."""
    return chain_hash(prev_hash, canonical_json(content), canonical_json(writer), seq)


def chain_hash(prev_hash: str, record_json: str, writer_json: str, seq: int) -> str:
    """:func:`link_hash` from the content and the writer already in canonical JSON (so an
    appending thread serialises its record before it waits for the batch's writer).

    ``canonical_json({"record": c, "seq": n, "writer": w})`` is the three members in sorted key
    order, each ``"key":value`` with the value in canonical form and nothing between them but a
    comma: exactly the text put together here, byte for byte (an ``int`` is written as
    ``str``)."""
    if type(seq) is not int:
        raise TypeError("seq must be an int")
    payload = f'{{"record":{record_json},"seq":{seq},"writer":{writer_json}}}'
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()
