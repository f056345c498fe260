"""The anchor: the newest checkpoint the writer signed, kept beside the audit key, outside the
database. ``check_trail`` holds a trail to it, so deleting every checkpoint to hide a rewrite
fails however short the trail left (``anchor_missing``, ``rewritten``); a forged anchor fails
(``forged_anchor``); an anchor older than the trail passes. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from orchestrator.audit import (
    AuditKeys,
    AuditStore,
    Checkpointer,
    TrailReport,
    check_trail,
    trusted_keys,
)
from orchestrator.audit._anchorfile import ANCHOR_FILE, read_anchor, write_anchor
from orchestrator.audit._checkpoint import CHECKPOINT_TYP
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.errors import ConfigError
from orchestrator.identity import generate_private_key, signing_key_of
from orchestrator.identity import sign_jws as sign
from tests.audit._anchor_attack import NOW, POLICY, healthy_trail, rewrite
from tests.audit.conftest import record


def verified(target: Path | str, keys_dir: Path, anchor: str | None = None) -> TrailReport:
    with AuditStore(target, read_only=True) as store:
        return check_trail(store.snapshot(), trusted_keys(keys_dir / PUBLIC_FILE), POLICY,
                           anchor)


def lines(trail: TrailReport) -> list[str]:
    return [str(p) for p in trail.problems]


def payload(jws: str) -> dict:
    segment = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_the_writer_keeps_its_newest_checkpoint_as_the_anchor(target: Path | str,
                                                              keys: AuditKeys,
                                                              keys_dir: Path) -> None:
    healthy_trail(target, keys)
    path = keys_dir / ANCHOR_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["type"] == "infrabot-audit-anchor" and document["number"] == 2
    with AuditStore(target, read_only=True) as store:
        newest = store.snapshot().checkpoints[-1]
    assert read_anchor(path) == document["checkpoint"] == newest.jws
    assert payload(newest.jws)["seq"] == 5 and payload(newest.jws)["reason"] == "shutdown"
    assert verified(target, keys_dir, read_anchor(path)).ok


def test_the_short_rewrite_passes_without_an_anchor_and_fails_with_it(
        target: Path | str, keys: AuditKeys, keys_dir: Path, raw_db) -> None:
    """The review's finding: without the anchor, what the attack leaves is a writer's fresh
    tail (3 records, 2 s); held to the anchor, it fails, naming why."""
    healthy_trail(target, keys)
    anchor = read_anchor(keys_dir / ANCHOR_FILE)
    with raw_db(target) as conn:
        rewrite(conn)
    blind = verified(target, keys_dir)
    assert blind.ok and blind.checkpoints == 0 and blind.unanchored == 3
    held = verified(target, keys_dir, anchor)
    time = payload(anchor)["time"]
    head = payload(anchor)["head_hash"]
    assert lines(held) == [
        (f"anchor_missing: writer svc seq 5: the anchor is checkpoint 2 ({time}), but the "
        "database holds no checkpoint: checkpoints were deleted, or the database was replaced "
        "by an older copy"),
        (f"rewritten: writer svc seq 5: the anchor (checkpoint 2): signed head hash {head[:16]}…, "
        "but the record is missing: records up to seq 5 were rewritten or removed")]
    assert held.anchor is not None and held.anchor.number == 2


def test_checkpoints_deleted_but_records_untouched_still_fail(
        target: Path | str, keys: AuditKeys, keys_dir: Path, raw_db) -> None:
    healthy_trail(target, keys)
    anchor = read_anchor(keys_dir / ANCHOR_FILE)
    with raw_db(target) as conn:
        conn.execute("DELETE FROM checkpoints WHERE number = 2")  # the newest only
    held = verified(target, keys_dir, anchor)
    assert [(p.kind, p.writer, p.seq) for p in held.problems] == [("anchor_missing", "svc", 5)]
    assert "but the database's checkpoints stop at 1: " in str(held.problems[0])
    assert verified(target, keys_dir).ok  # the newest gone, one record after: a tail


def test_an_anchor_older_than_the_trail_passes(target: Path | str, keys: AuditKeys,
                                               keys_dir: Path) -> None:
    """A copy of the anchor taken earlier: the healthy writer signed more since."""
    healthy_trail(target, keys)
    older = read_anchor(keys_dir / ANCHOR_FILE)
    with AuditStore(target, writer="svc") as store:
        checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                    every_records=4, every_seconds=10, clock=lambda: NOW + 300)
        store.anchor_with(checkpointer)
        for i in range(6):
            store.append(record(resource=f"later-{i}"))
        checkpointer.close()
    newer = read_anchor(keys_dir / ANCHOR_FILE)
    assert payload(newer)["number"] > payload(older)["number"]
    for anchor in (older, newer):
        trail = verified(target, keys_dir, anchor)
        assert trail.ok and trail.unanchored == 0, lines(trail)


def _forged(anchor: str, keys_dir: Path, how: str) -> str:
    header, body, signature = anchor.split(".")
    if how == "bad signature":
        flipped = "A" if signature[10] != "A" else "B"
        return f"{header}.{body}.{signature[:10]}{flipped}{signature[11:]}"
    thief = signing_key_of(generate_private_key("ES256"), "ES256")
    claims = {**payload(anchor), "seq": 1}
    kid = thief.kid if how == "another key" else trusted_keys(keys_dir / PUBLIC_FILE).popitem()[0]
    return sign(claims, thief, {"typ": CHECKPOINT_TYP, "kid": kid})


@pytest.mark.parametrize(("how", "why"), [
    ("bad signature", "bad signature"),
    ("another key", "signed by an unknown audit key"),
    ("another key under the trusted kid", "bad signature"),
])
def test_a_forged_anchor_fails(target: Path | str, keys: AuditKeys, keys_dir: Path,
                               raw_db, how: str, why: str) -> None:
    healthy_trail(target, keys)
    forged = _forged(read_anchor(keys_dir / ANCHOR_FILE), keys_dir, how)
    trail = verified(target, keys_dir, forged)  # the trail itself is untouched
    assert [p.kind for p in trail.problems] == ["forged_anchor"]
    assert str(trail.problems[0]).startswith(f"forged_anchor: the anchor: {why}")
    assert str(trail.problems[0]).endswith(": it vouches for nothing")
    with raw_db(target) as conn:  # nor does a forged anchor hide the attack
        rewrite(conn)
    assert [p.kind for p in verified(target, keys_dir, forged).problems] == ["forged_anchor"]


def test_the_anchor_never_moves_back(tmp_path: Path, keys: AuditKeys, keys_dir: Path) -> None:
    """A database whose checkpoints are behind the anchor (replaced by an older or empty copy)
    does not pull the anchor back when its writer signs again: verify keeps failing it."""
    db = tmp_path / "state" / "audit.sqlite3"
    healthy_trail(db, keys, records=9)  # checkpoints 1, 2 (records) and 3 (shutdown)
    anchor = read_anchor(keys_dir / ANCHOR_FILE)
    db.unlink()
    healthy_trail(db, keys)  # a fresh database: checkpoints 1 and 2
    assert read_anchor(keys_dir / ANCHOR_FILE) == anchor
    trail = verified(db, keys_dir, anchor)
    assert [p.kind for p in trail.problems] == ["anchor_missing", "rewritten"]
    assert "but the database's checkpoints stop at 2: " in str(trail.problems[0])
    assert write_anchor(keys_dir, "a.b.c", 3) is False
    assert write_anchor(keys_dir, "a.b.c", 4) is True and read_anchor(keys_dir / ANCHOR_FILE) == \
        "a.b.c"


@pytest.mark.parametrize("content", [b"", b"{", b'{"checkpoint": 1}', b"not a jws",
                                     b"\xff\xfe", b'{"checkpoint": "a.b"}'])
def test_an_unreadable_anchor_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "anchor.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=str(path)):
        read_anchor(path)
    with pytest.raises(ConfigError, match="no audit anchor at"):
        read_anchor(tmp_path / "missing.json")


def test_a_bare_jws_is_an_anchor(tmp_path: Path, target: Path | str, keys: AuditKeys,
                                 keys_dir: Path) -> None:
    healthy_trail(target, keys)
    bare = tmp_path / "anchor.jws"
    bare.write_text(read_anchor(keys_dir / ANCHOR_FILE) + "\n")
    assert verified(target, keys_dir, read_anchor(bare)).ok
