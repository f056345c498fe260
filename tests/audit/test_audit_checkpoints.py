"""Signed checkpoints: when a writer signs, what verification proves with them, and what the
attacker who can write the database (but does not hold the audit key) is caught doing.

Each test with a store runs on SQLite and on PostgreSQL (the ``target`` fixture). The attacker
here has the database and has read the code: they drop the guard triggers,
rewrite a record, recompute every hash after it and the writer head, and try to bring the
checkpoints along (delete them, re-sign them with their own key, edit their rows).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jwt.algorithms import ECAlgorithm

from infrabot.demo._audit_attack import recompute_from
from orchestrator.audit import (
    AnchorPolicy,
    AuditKeys,
    AuditStore,
    Checkpointer,
    TrailReport,
    check_trail,
    checkpoint_ticker,
    trusted_keys,
)
from orchestrator.audit._checkpoint import CHECKPOINT_TYP
from orchestrator.audit._keys import PRIVATE_FILE, PUBLIC_FILE
from orchestrator.errors import ConfigError
from orchestrator.identity import generate_private_key, signing_key_of
from orchestrator.identity import sign_jws as sign
from tests.audit.conftest import NOW


class Clock(SimpleNamespace):
    now: float


@pytest.fixture
def clock() -> Clock:
    """``clock.now`` is the time; the checkpointer is given ``lambda: clock.now``."""
    return Clock(now=NOW)



@pytest.fixture
def writer(target: Path | str, keys: AuditKeys, clock: Clock
           ) -> Iterator[tuple[AuditStore, Checkpointer]]:
    store = AuditStore(target, writer="svc")
    checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                every_records=4, every_seconds=10, clock=lambda: clock.now)
    store.anchor_with(checkpointer)
    yield store, checkpointer
    store.close()


def fill(store: AuditStore, make_record: Any, count: int, start: int = 1) -> None:
    for i in range(start, start + count):
        store.append(make_record(resource=f"r-{i}"))


def written(writer: tuple[AuditStore, Checkpointer], make_record: Any, count: int) -> None:
    """``count`` records by the writer, which then stops (without a shutdown checkpoint)."""
    store, _ = writer
    fill(store, make_record, count)
    store.close()


POLICY = AnchorPolicy(every_records=4, every_seconds=10)  # what the ``writer`` fixture uses


def report(target: Path | str, keys_dir: Path, policy: AnchorPolicy = POLICY) -> TrailReport:
    with AuditStore(target, read_only=isinstance(target, Path)) as store:
        return check_trail(store.snapshot(), trusted_keys(keys_dir / PUBLIC_FILE), policy)


def kinds(trail: TrailReport) -> list[tuple[str, str, int]]:
    return [(p.kind, p.writer, p.seq) for p in trail.problems]


def test_a_checkpoint_every_n_records_anchors_them(writer, make_record, target: Path | str,
                                                    keys_dir: Path) -> None:
    store, _ = writer
    fill(store, make_record, 10)
    trail = report(target, keys_dir)
    assert trail.ok and trail.checkpoints == 2
    (anchor,) = trail.writers
    assert (anchor.records, anchor.anchored_seq, anchor.unanchored) == (10, 8, 2)
    assert anchor.describe().startswith("writer svc: 10 records; seq 1-8 anchored by "
                                        "checkpoint 2 (")
    assert anchor.describe().endswith("; seq 9-10 unanchored (after the last checkpoint)")


def test_checkpoint_payload_and_chain(writer, make_record, target: Path | str, keys: AuditKeys
                                      ) -> None:
    store, checkpointer = writer
    fill(store, make_record, 5)
    checkpointer.close()
    rows = store.snapshot().checkpoints
    assert [(c.number, c.writer, c.seq) for c in rows] == [(1, "svc", 4), (2, "svc", 5)]
    assert rows[0].prev == "0" * 64 and rows[1].prev == rows[0].hash
    assert all(c.kid == keys.current().kid for c in rows)
    header, payload = (json.loads(_b64(part)) for part in rows[1].jws.split(".")[:2])
    assert header == {"alg": "ES256", "kid": keys.current().kid, "typ": CHECKPOINT_TYP}
    assert payload == {"number": 2, "writer": "svc", "seq": 5, "head_hash": rows[1].head_hash,
                       "time": "2027-01-15T08:00:00.000000Z", "prev": rows[0].hash,
                       "reason": "shutdown", "every_records": 4,
                       "every_seconds": 10.0}
    assert store.snapshot().rows[-1].hash == rows[1].head_hash


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_nothing_new_means_no_checkpoint(writer, make_record) -> None:
    store, checkpointer = writer
    assert checkpointer.checkpoint("requested") is None  # no record yet
    fill(store, make_record, 4)
    assert checkpointer.checkpoint("requested") is None  # the 4th record was anchored
    checkpointer.close()
    assert len(store.snapshot().checkpoints) == 1


def test_time_based_checkpoint(writer, make_record, clock: Clock) -> None:
    store, checkpointer = writer
    fill(store, make_record, 1)
    clock.now += 9
    checkpointer.tick()
    assert store.snapshot().checkpoints == []
    clock.now += 1
    checkpointer.tick()
    assert [c.seq for c in store.snapshot().checkpoints] == [1]


def test_run_end_checkpoint(writer, make_record) -> None:
    store, checkpointer = writer
    fill(store, make_record, 2)
    checkpointer.run_ended("run-1")
    (row,) = store.snapshot().checkpoints
    assert row.seq == 2 and '"reason":"run_end"' in _b64(row.jws.split(".")[1]).decode()


def test_writers_share_one_checkpoint_chain(target: Path | str, keys: AuditKeys, clock: Clock,
                                            make_record, keys_dir: Path) -> None:
    with AuditStore(target, writer="a") as a, AuditStore(target, writer="b") as b:
        for store in (a, b):
            cp = Checkpointer(store, keys, anchor_dir=keys.directory,
                              every_records=2, every_seconds=10, clock=lambda: clock.now)
            store.anchor_with(cp)
        for i in range(4):
            a.append(make_record(resource=f"a-{i}"))
            b.append(make_record(resource=f"b-{i}"))
        rows = a.snapshot().checkpoints
    assert [(c.number, c.writer, c.seq) for c in rows] == [(1, "a", 2), (2, "b", 2), (3, "a", 4),
                                                           (4, "b", 4)]
    trail = report(target, keys_dir)
    assert trail.ok and trail.unanchored == 0


def test_recomputed_chain_is_caught(writer, make_record, target: Path | str, keys_dir: Path,
                                    raw_db) -> None:
    store, checkpointer = writer
    fill(store, make_record, 6)
    checkpointer.close()
    store.close()
    with raw_db(target) as conn:
        recompute_from(conn, "svc", 2, decision="deny", reason="forged")
    with AuditStore(target, read_only=isinstance(target, Path)) as reader:
        assert reader.verify().ok  # the keyless chain alone is fooled
    trail = report(target, keys_dir)
    assert kinds(trail) == [("rewritten", "svc", 4), ("rewritten", "svc", 6)]
    assert str(trail.problems[0]).startswith(
        "rewritten: writer svc seq 4: checkpoint 1: signed head hash ")
    assert "records up to seq 4 were rewritten or removed" in str(trail.problems[0])


def test_rewrite_after_the_last_checkpoint_is_only_unanchored(writer, make_record,
                                                              target: Path | str, keys_dir: Path,
                                                              raw_db) -> None:
    written(writer, make_record, 6)
    with raw_db(target) as conn:
        recompute_from(conn, "svc", 5, decision="deny")
    trail = report(target, keys_dir)
    assert trail.ok and trail.writers[0].unanchored == 2  # said plainly: not vouched for


def test_deleting_checkpoints_to_hide_a_rewrite(writer, make_record, target: Path | str,
                                                keys_dir: Path, raw_db) -> None:
    written(writer, make_record, 12)
    with raw_db(target) as conn:
        recompute_from(conn, "svc", 3, decision="deny")
        conn.execute("DELETE FROM checkpoints")
    trail = report(target, keys_dir)
    # no checkpoint is left to sign a bound: the verifier's own (4 records) holds
    assert kinds(trail) == [("missing_checkpoints", "svc", 1)]
    assert str(trail.problems[0]) == (
        "missing_checkpoints: writer svc seq 1: 12 records and no checkpoint, more than the configured every 4: "
        "checkpoints were deleted or not written")
    # held to a looser bound, the same tail is only unanchored
    assert report(target, keys_dir, AnchorPolicy(every_records=12, every_seconds=10)).ok


def test_deleting_every_checkpoint_of_a_slow_writer(keys: AuditKeys, target: Path | str,
                                                    keys_dir: Path, clock: Clock, make_record,
                                                    raw_db) -> None:
    """Few records, but spread over longer than a checkpoint period: a running writer would
    have anchored the first ones, so their checkpoints were deleted."""
    with AuditStore(target, writer="svc") as store:
        checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                    every_records=4, every_seconds=10, clock=lambda: clock.now)
        store.anchor_with(checkpointer)
        for minute in range(3):
            store.append(make_record(resource=f"r-{minute}",
                                     time=datetime.fromtimestamp(NOW + 60 * minute, UTC)))
            clock.now = NOW + 60 * minute + 11
            checkpointer.tick()
    assert report(target, keys_dir).ok  # each record anchored by its interval checkpoint
    with raw_db(target) as conn:
        conn.execute("DELETE FROM checkpoints")
    trail = report(target, keys_dir)
    assert kinds(trail) == [("missing_checkpoints", "svc", 1)]
    assert str(trail.problems[0]) == (
        "missing_checkpoints: writer svc seq 1: unanchored records and no checkpoint span 120 s, more than the "
        "configured 10 s (+30 s grace): checkpoints were deleted or not written")


def test_a_killed_writers_short_tail_is_only_unanchored(keys: AuditKeys, target: Path | str,
                                                        keys_dir: Path, make_record) -> None:
    """What a writer killed before its first checkpoint leaves: within both bounds."""
    with AuditStore(target, writer="svc") as store:
        for second in (0, 9):
            store.append(make_record(time=datetime.fromtimestamp(NOW + second, UTC)))
    trail = report(target, keys_dir)
    assert trail.ok and trail.writers[0].unanchored == 2


def test_the_signed_period_bounds_the_tail(writer, make_record, target: Path | str,
                                           keys_dir: Path, clock: Clock) -> None:
    store, checkpointer = writer
    store.append(make_record(resource="r-0", time=datetime.fromtimestamp(NOW, UTC)))
    checkpointer.checkpoint("requested")
    for second in (1, 50):  # then the ticker never ran: checkpoints deleted or not written
        store.append(make_record(time=datetime.fromtimestamp(NOW + second, UTC)))
    trail = report(target, keys_dir, AnchorPolicy(every_records=4, every_seconds=3600))
    assert kinds(trail) == [("missing_checkpoints", "svc", 2)]
    assert "span 49 s, more than the writer's 10 s (+30 s grace)" in str(trail.problems[0])


def test_deleting_the_last_checkpoints_leaves_too_many_unanchored(writer, make_record,
                                                                  target: Path | str,
                                                                  keys_dir: Path,
                                                                  raw_db) -> None:
    written(writer, make_record, 12)
    with raw_db(target) as conn:
        recompute_from(conn, "svc", 6, decision="deny")
        conn.execute("DELETE FROM checkpoints WHERE number > 1")
    trail = report(target, keys_dir)
    assert kinds(trail) == [("missing_checkpoints", "svc", 5)]
    assert "8 records after the last checkpoint, more than the writer's every 4" in \
        str(trail.problems[0])


def test_deleted_middle_checkpoint_breaks_the_chain(writer, make_record, target: Path | str,
                                                    keys_dir: Path, raw_db) -> None:
    written(writer, make_record, 12)
    with raw_db(target) as conn:
        conn.execute("DELETE FROM checkpoints WHERE number = 2")
    trail = report(target, keys_dir)
    assert kinds(trail) == [("broken_checkpoint_chain", "svc", 12)]
    assert str(trail.problems[0]).endswith("checkpoint 3: checkpoint 2 missing")


def test_checkpoint_signed_by_another_key_is_forged(writer, make_record, target: Path | str,
                                                    keys_dir: Path, raw_db,
                                                    keys: AuditKeys) -> None:
    written(writer, make_record, 4)
    thief = signing_key_of(generate_private_key("ES256"), "ES256")
    with raw_db(target) as conn:
        recompute_from(conn, "svc", 1, decision="deny")
        head = conn.execute("SELECT hash FROM records WHERE seq = 4").fetchone()[0]
        (jws,) = conn.execute("SELECT jws FROM checkpoints").fetchone()
        payload = json.loads(_b64(jws.split(".")[1]))
        payload["head_hash"] = head
        for kid in (thief.kid, keys.current().kid):  # its own kid, then the real one's
            forged = sign(payload, thief, {"typ": CHECKPOINT_TYP, "kid": kid})
            conn.execute("UPDATE checkpoints SET head_hash = ?, jws = ?, kid = ?",
                         (head, forged, kid))
            trail = report(target, keys_dir)
            why = "signed by an unknown audit key" if kid == thief.kid else "bad signature"
            assert kinds(trail) == [("forged_checkpoint", "svc", 4)]
            assert why in str(trail.problems[0])


def test_row_that_differs_from_its_signed_payload(writer, make_record, target: Path | str,
                                                  keys_dir: Path, raw_db) -> None:
    written(writer, make_record, 8)
    with raw_db(target) as conn:
        conn.execute("UPDATE checkpoints SET seq = 3 WHERE number = 1")
    trail = report(target, keys_dir)
    assert ("forged_checkpoint", "svc", 3) in kinds(trail)
    assert "the stored row differs from its signed payload" in str(trail.problems[0])


@pytest.mark.parametrize("jws", ["garbage", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"])
def test_malformed_checkpoint_is_forged(writer, make_record, target: Path | str, keys_dir: Path,
                                        raw_db, jws: str) -> None:
    written(writer, make_record, 4)
    with raw_db(target) as conn:
        conn.execute("UPDATE checkpoints SET jws = ?", (jws,))
    trail = report(target, keys_dir)
    assert kinds(trail) == [("forged_checkpoint", "svc", 4)]


def test_rotation_keeps_old_checkpoints_verifiable(writer, make_record, target: Path | str,
                                                   keys_dir: Path, keys: AuditKeys,
                                                   clock: Clock) -> None:
    store, _ = writer
    old = keys.current().kid
    fill(store, make_record, 4)
    clock.now += 100
    new = keys.rotate(now=int(clock.now)).kid
    fill(store, make_record, 4, start=5)
    assert [c.kid for c in store.snapshot().checkpoints] == [old, new]
    assert AuditKeys(keys_dir).current().kid == new  # the old private key is gone
    published = json.loads((keys_dir / PUBLIC_FILE).read_text())["keys"]
    assert [(k["kid"], k.get("retired_at")) for k in published] == [(old, int(clock.now)),
                                                                      (new, None)]
    assert report(target, keys_dir).ok


def test_a_retired_key_signing_after_its_retirement_is_refused(
        writer, make_record, target: Path | str, keys_dir: Path, keys: AuditKeys, clock: Clock,
        tmp_path: Path) -> None:
    store, _ = writer
    stolen = (keys_dir / PRIVATE_FILE).read_bytes()
    keys.rotate(now=int(clock.now))
    (keys_dir / PRIVATE_FILE).write_bytes(stolen)  # the thief signs with the old key
    clock.now += 3600
    fill(store, make_record, 4)
    trail = report(target, keys_dir)
    assert kinds(trail) == [("forged_checkpoint", "svc", 4)]
    assert "after it was retired" in str(trail.problems[0])


def test_a_checkpoint_that_cannot_be_written_never_fails_the_append(
        writer, make_record, keys_dir: Path) -> None:
    store, _ = writer
    saved = (keys_dir / PRIVATE_FILE).read_bytes()
    (keys_dir / PRIVATE_FILE).unlink()
    fill(store, make_record, 5)
    assert len(store.snapshot().rows) == 5 and store.snapshot().checkpoints == []
    (keys_dir / PRIVATE_FILE).write_bytes(saved)
    fill(store, make_record, 1, start=6)  # still due: tried again at the next record
    assert [c.seq for c in store.snapshot().checkpoints] == [6]


def test_private_key_is_owner_only_and_never_published(keys: AuditKeys, keys_dir: Path
                                                       ) -> None:
    assert (keys_dir / PRIVATE_FILE).stat().st_mode & 0o777 == 0o600
    assert keys_dir.stat().st_mode & 0o777 == 0o700
    published = (keys_dir / PUBLIC_FILE).read_text()
    assert '"d"' not in published and keys.current().kid in published


def test_trusted_keys_skip_a_jwk_with_private_members(tmp_path: Path, keys: AuditKeys) -> None:
    path = tmp_path / "keys.json"
    private = keys.current()
    jwk = json.loads(ECAlgorithm.to_jwk(private.private))
    path.write_text(json.dumps({"keys": [{**jwk, "kid": private.kid, "alg": "ES256"}]}))
    with pytest.raises(ConfigError, match="no usable audit public key"):
        trusted_keys(path)


def test_the_ticker_signs_within_the_period(target: Path | str, keys: AuditKeys, make_record
                                            ) -> None:
    with AuditStore(target, writer="ticked") as store:
        checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                    every_records=1000, every_seconds=0.2, clock=time.time)
        store.anchor_with(checkpointer)
        with checkpoint_ticker(checkpointer, interval=0.05):
            store.append(make_record())
            deadline = time.monotonic() + 5
            while not store.snapshot().checkpoints and time.monotonic() < deadline:
                time.sleep(0.05)
        (row,) = store.snapshot().checkpoints
    assert row.seq == 1 and '"reason":"interval"' in _b64(row.jws.split(".")[1]).decode()


def test_concurrent_writers_number_checkpoints_without_gaps(target: Path | str, keys: AuditKeys,
                                                            keys_dir: Path, make_record) -> None:
    """Four writers (each its own store, its own connections) signing at once: one gapless
    chain of checkpoint numbers, each linking its predecessor (the ``checkpoints`` lock)."""
    stores = [AuditStore(target, writer=f"w{i}") for i in range(4)]
    try:
        for store in stores:
            checkpointer = Checkpointer(store, keys, anchor_dir=keys.directory,
                                        every_records=2, every_seconds=60, clock=time.time)
            store.anchor_with(checkpointer)
        start = threading.Barrier(len(stores))

        def append(store: AuditStore) -> None:
            start.wait()
            fill(store, make_record, 20)

        threads = [threading.Thread(target=append, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows = stores[0].snapshot().checkpoints
    finally:
        for store in stores:
            store.close()
    assert [c.number for c in rows] == list(range(1, 41))
    assert all(later.prev == earlier.hash for earlier, later in itertools.pairwise(rows))
    trail = report(target, keys_dir)
    assert trail.ok and trail.checkpoints == 40 and trail.unanchored == 0


def test_record_checkpoints_fall_on_every_nth_record_however_batched(
        target: Path | str, keys: AuditKeys, keys_dir: Path, make_record) -> None:
    """16 threads append at once, so records go in batches of many: each batch that reaches the
    bound ends there and is anchored before the next, so the record-count checkpoints are at
    exactly every 10th record and no tail was ever longer."""
    with AuditStore(target, writer="busy") as store:
        store.anchor_with(Checkpointer(store, keys, anchor_dir=keys.directory,
                                       every_records=10, every_seconds=60, clock=time.time))
        start = threading.Barrier(16, timeout=30)

        def append(thread: int) -> None:
            start.wait()
            for i in range(25):
                store.append(make_record(resource=f"r-{thread}-{i}"))

        with ThreadPoolExecutor(16) as pool:  # a thread's exception fails the test here
            list(pool.map(append, range(16)))
        rows = store.snapshot().checkpoints
    assert [c.seq for c in rows] == list(range(10, 401, 10))
    trail = report(target, keys_dir, AnchorPolicy(every_records=10, every_seconds=60))
    assert trail.ok and trail.unanchored == 0


class HeldKeys:
    """The audit keys, but the first signing waits until ``release`` is set (a slow signer, or
    a checkpoint waiting for the database's ``checkpoints`` lock)."""

    def __init__(self, keys: AuditKeys) -> None:
        self._keys, self.signing, self.release = keys, threading.Event(), threading.Event()

    def current(self) -> Any:
        self.signing.set()
        assert self.release.wait(10)
        return self._keys.current()


def test_records_appended_while_a_checkpoint_is_signed_never_overrun_the_bound(
        target: Path | str, keys: AuditKeys, keys_dir: Path, make_record) -> None:
    """The 4th record's checkpoint is being signed when another thread appends: it waits for the
    checkpoint, so a verification meanwhile finds 4 unanchored records, within the bound. (Had
    it committed first, as when the appending thread signed after its commit, the verifier
    would find 5 and report missing checkpoints of a healthy writer.)"""
    held = HeldKeys(keys)
    with AuditStore(target, writer="svc") as store:
        store.anchor_with(Checkpointer(store, held, anchor_dir=None, every_records=4,
                                       every_seconds=60, clock=time.time))
        first = threading.Thread(target=fill, args=(store, make_record, 4))
        first.start()
        assert held.signing.wait(10)
        second = threading.Thread(target=fill, args=(store, make_record, 4, 5))
        second.start()
        deadline = time.monotonic() + 0.5  # what the second thread commits in that time
        while len(store.snapshot().rows) == 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        during = report(target, keys_dir)
        held.release.set()
        first.join()
        second.join()
        rows = store.snapshot().checkpoints
    assert during.ok and [(w.records, w.unanchored) for w in during.writers] == [(4, 4)]
    assert [c.seq for c in rows] == [4, 8]
    assert report(target, keys_dir).ok
