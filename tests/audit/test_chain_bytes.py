"""The chain hash and the stored JSON are byte for byte what they were before appends were
serialised in the caller's thread (:func:`orchestrator.audit._append.prepare`) and hashed from
the pieces (:func:`orchestrator.audit._chain.chain_hash`): chains written by earlier versions
still verify, and records written now verify with earlier code."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.audit import GENESIS_HASH, AuditRecord, AuditStore
from orchestrator.audit._chain import chain_hash, link_hash
from orchestrator.audit._record import canonical_json

# Written by the code before this change (orchestrator/audit/_chain.py at 0e0d370) for the
# record below as writer "host:1:abcd", seq 7, after GENESIS_HASH.
PINNED = "eabf9bbbcc489650d07716be28a0c95d9be376436560963876715bd0dd4110e6"


def _before(prev_hash: str, content: dict[str, Any], writer: str, seq: int) -> str:
    """The hash exactly as earlier versions computed it (json.dumps of the whole payload)."""
    payload = json.dumps({"record": content, "seq": seq, "writer": writer}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def _pinned_record() -> AuditRecord:
    return AuditRecord(
        time=datetime(2026, 12, 6, 13, 0, 0, 123456, tzinfo=UTC), service="aws",
        action="tags:delete", resource='ec2:i-1 "quoted" \\ back\u2028slash \u00e9\U0001f600',
        decision="allow", reason="ok", performed_by="agent:cleanup", on_behalf_of="user:sam",
        chain=("agent:cleanup", "user:sam"), scopes=("urn:a", "urn:b"),
        context={"z": "last", "a": "first \n\t", "ü": "unicode key"}, jti="jti-1",
        run_id="run-1", request_id="req-1", status=204)


def test_the_hash_of_a_fixed_record_is_the_one_earlier_versions_wrote() -> None:
    content = _pinned_record().content()
    assert _before(GENESIS_HASH, content, "host:1:abcd", 7) == PINNED
    assert link_hash(GENESIS_HASH, content, "host:1:abcd", 7) == PINNED
    assert chain_hash(GENESIS_HASH, canonical_json(content), canonical_json("host:1:abcd"),
                      7) == PINNED


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(content=st.dictionaries(st.text(), _json, max_size=8), writer=st.text(min_size=1),
       seq=st.integers(min_value=1, max_value=2**62),
       prev_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_the_hash_put_together_from_pieces_is_the_hash_of_the_whole(
        content: dict[str, Any], writer: str, seq: int, prev_hash: str) -> None:
    expected = _before(prev_hash, content, writer, seq)
    assert chain_hash(prev_hash, canonical_json(content), canonical_json(writer), seq) == expected
    assert link_hash(prev_hash, content, writer, seq) == expected


def test_a_seq_that_is_not_an_int_is_refused() -> None:
    with pytest.raises(TypeError):
        chain_hash(GENESIS_HASH, "{}", '"w"', True)


def test_a_stored_record_has_the_earlier_hash_and_json_columns(sqlite_path: Path,
                                                               raw_db) -> None:
    record = _pinned_record()
    with AuditStore(sqlite_path, writer="host:1:abcd") as store:
        first = store.append(record)
        second = store.append(record)
    content = record.content()
    assert first.hash == _before(GENESIS_HASH, content, "host:1:abcd", 1)
    assert second.hash == _before(first.hash, content, "host:1:abcd", 2)
    with raw_db(sqlite_path) as conn:
        row = conn.execute("SELECT chain, scopes, context FROM records WHERE id = ?",
                           (first.id,)).fetchone()
    assert tuple(row) == tuple(json.dumps(content[name], ensure_ascii=False)
                               for name in ("chain", "scopes", "context"))
