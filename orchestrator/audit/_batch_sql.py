"""The SQL a batch of records is written with (:class:`~orchestrator.audit._append.ChainWriter`):
the statements, and on PostgreSQL one server-side function that does what they do.

The statements, one transaction per batch: the writer's lock; the records in one prepared
``INSERT`` run once per record, each storing its record only if the writer's head is still the
one the batch follows (``INSERT_AFTER``; from seq 1, only if there is no head: ``INSERT_FIRST``
and ``FIRST_HEAD``); the head moved one record at a time (``MOVE_HEAD``, each conditional on its
predecessor, so the forward-only trigger sees single steps); and the batch's rows read back by
writer and seq (``FOUND``), which say what was stored.

``audit_append_batch`` (PostgreSQL, created with the schema) is the same in one statement: it
takes the writer's advisory lock by the key :meth:`~orchestrator.db.Transaction.lock` takes
(:func:`~orchestrator.db.lock_key`), so the two ways exclude each other, then inserts, moves the
head and reads back as above, the batch given as one JSON array. On PostgreSQL most of what an
append cost was the driver's work per statement (five a batch, and ``BEGIN``), in the appending
process: one statement with one parameter does away with most of it (docs/audit.md,
"Performance"). The writer calls it when it knows the head and the bound from its own count; the
first record of a chain, a head to be read, and a bound to be read from the checkpoints take the
statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orchestrator.audit._record import CONTENT_FIELDS
from orchestrator.db import Database, lock_key

_INTEGER_FIELDS = frozenset({"status"})
_VALUES = ", ".join(["?", "CAST(? AS INTEGER)", "?", "?"] + [
    "CAST(? AS INTEGER)" if name in _INTEGER_FIELDS else "?" for name in CONTENT_FIELDS])
_INSERT = (f"INSERT INTO records (writer, seq, prev_hash, hash, {', '.join(CONTENT_FIELDS)}) "
           f"SELECT {_VALUES} WHERE ")
# The record is stored only if its writer's head is the one its batch follows (or, for a batch
# from seq 1, absent).
INSERT_AFTER = _INSERT + ("EXISTS (SELECT 1 FROM writers WHERE writer = ? AND last_seq = ? "
                           "AND last_hash = ?)")
INSERT_FIRST = _INSERT + "NOT EXISTS (SELECT 1 FROM writers WHERE writer = ?)"
MOVE_HEAD = ("UPDATE writers SET last_seq = ?, last_hash = ? "
              "WHERE writer = ? AND last_seq = ? AND last_hash = ?")
FIRST_HEAD = ("INSERT INTO writers (writer, last_seq, last_hash) VALUES (?, ?, ?) "
               "ON CONFLICT (writer) DO NOTHING")
HEAD = "SELECT last_seq, last_hash FROM writers WHERE writer = ?"
FOUND = "SELECT seq, hash, id FROM records WHERE writer = ? AND seq >= ? AND seq <= ?"
LOCK = "audit:writer:{writer}"  # Transaction.lock(f"writer:{writer}") on the audit schema

FUNCTION = f"""CREATE OR REPLACE FUNCTION audit_append_batch(
        p_lock BIGINT, p_writer TEXT, p_seq INTEGER, p_hash TEXT, p_rows TEXT)
    RETURNS TABLE (seq INTEGER, hash TEXT, id BIGINT) LANGUAGE plpgsql AS $$
    DECLARE
        r RECORD;
    BEGIN
        PERFORM pg_advisory_xact_lock(p_lock);
        INSERT INTO records (writer, seq, prev_hash, hash, {', '.join(CONTENT_FIELDS)})
            SELECT p_writer, b.seq, b.prev_hash, b.hash, {', '.join(f'b.{n}' for n in CONTENT_FIELDS)}
            FROM json_populate_recordset(NULL::records, p_rows::json) AS b
            WHERE EXISTS (SELECT 1 FROM writers w
                          WHERE w.writer = p_writer AND w.last_seq = p_seq AND w.last_hash = p_hash);
        FOR r IN SELECT b.seq, b.prev_hash, b.hash
                 FROM json_populate_recordset(NULL::records, p_rows::json) AS b LOOP
            UPDATE writers w SET last_seq = r.seq, last_hash = r.hash
                WHERE w.writer = p_writer AND w.last_seq = r.seq - 1 AND w.last_hash = r.prev_hash;
        END LOOP;
        RETURN QUERY SELECT s.seq, s.hash, s.id FROM records s
            WHERE s.writer = p_writer AND s.seq > p_seq
              AND s.seq <= p_seq + json_array_length(p_rows::json);
    END $$"""

_CALL = "SELECT seq, hash, id FROM audit_append_batch(?, ?, ?, ?, ?)"
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def append_batch(db: Database, writer: str, start: tuple[int, str],
                 rows: Sequence[tuple[int, str, str, tuple[Any, ...]]]) -> list[Any]:
    """Append ``rows`` (seq, prev_hash, hash, the content's columns in ``CONTENT_FIELDS``
    order) after the head ``start`` of ``writer``'s chain, in one statement; the rows of the
    batch's seqs that are stored (seq, hash, id)."""
    batch = [dict(zip(CONTENT_FIELDS, columns, strict=True),
                  seq=seq, prev_hash=prev_hash, hash=digest)
             for seq, prev_hash, digest, columns in rows]
    return db.statement(_CALL, (lock_key(LOCK.format(writer=writer)), writer, start[0],
                                start[1], _ENCODE(batch)))
