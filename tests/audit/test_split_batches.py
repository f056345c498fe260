"""A batch that reaches a record-count checkpoint is written in parts (orchestrator/audit/_append.py):
each part is anchored before the next is written, keeps its own attempts when its connection is
lost, and a part that fails answers only its own records, never the ones already stored.

The batch writer is driven directly (``store._chain.write``) with the many records group commit
would hand it at once. A lost connection is a transaction wrapped to raise ``ConnectionLost``
after rolling back (a real server cannot be made to lose exactly the n-th one on demand).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.audit import AuditKeys, AuditStore, Checkpointer
from orchestrator.audit._append import Appended, prepare
from orchestrator.db import ConnectionLost
from orchestrator.errors import Unavailable
from tests._postgres import raw

EVERY = 10


@pytest.fixture
def keys(tmp_path: Path) -> AuditKeys:
    return AuditKeys.open(tmp_path / "keys", "ES256", now=int(time.time()))


def anchored(target: Path | str, keys: AuditKeys) -> AuditStore:
    store = AuditStore(target, writer="svc")
    store.anchor_with(Checkpointer(store, keys, anchor_dir=keys.directory,
                                   every_records=EVERY, every_seconds=60, clock=time.time))
    return store


def contents(make_record: Any, count: int, tag: str) -> list[Any]:
    return [prepare(make_record(resource=f"{tag}-{i}").content()) for i in range(count)]


def checkpoint_seqs(store: AuditStore) -> list[int]:
    return [c.seq for c in store.snapshot().checkpoints]


def test_a_store_continuing_its_writers_chain_signs_what_is_due_before_it_writes(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """A second store of writer ``svc`` (another process, or this one restarted) knows of no
    checkpoint of its own: it finds the chain at the bound, so it anchors before it writes,
    then ends each part at the next bound (not one commit of 25 records past the last
    checkpoint)."""
    with anchored(target, keys) as first:
        for i in range(EVERY):
            first.append(make_record(resource=f"a-{i}"))
        assert checkpoint_seqs(first) == [10]
    with anchored(target, keys) as second:
        answers = second._chain.write(contents(make_record, 25, "b"))
        assert [a.seq for a in answers if isinstance(a, Appended)] == list(range(11, 36))
        assert checkpoint_seqs(second) == [10, 20, 30]


@contextmanager
def refusing_inserts(target: Path | str) -> Iterator[None]:
    """From now on the database refuses every new audit record (a trigger; the server's own
    refusal, not a lost connection)."""
    if isinstance(target, str):
        with raw(target) as conn:
            conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON records FOR EACH ROW "
                         "EXECUTE FUNCTION refuse()")
    else:
        with closing(sqlite3.connect(target, isolation_level=None)) as conn:
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON records "
                         "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    yield


def test_a_part_the_database_refuses_answers_only_its_own_records(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """The first 10 of 15 records are stored and anchored, then the database refuses the rest:
    the 10 are answered where they went (a caller told "not stored" would write its record
    again), the 5 with the refusal."""
    with anchored(target, keys) as store:
        anchor = store._chain.anchor
        assert anchor is not None

        class RefuseAfterAnchor:
            def due_at(self) -> int:
                return anchor.due_at()

            def anchor(self, seq: int, digest: str) -> bool:
                signed = anchor.anchor(seq, digest)
                with refusing_inserts(target):
                    return signed

        store._chain.anchor = RefuseAfterAnchor()
        answers = store._chain.write(contents(make_record, 15, "r"))
        assert [a.seq for a in answers[:10] if isinstance(a, Appended)] == list(range(1, 11))
        assert all(isinstance(a, Exception) and not isinstance(a, Appended)
                   for a in answers[10:]), answers[10:]
        assert len(store.snapshot().rows) == 10 and checkpoint_seqs(store) == [10]


class LosingSends:
    """The store's database, but the sends (transactions that insert records, or a batch sent
    as one statement) numbered in ``rolled_back`` lose their connection before their commit,
    those in ``committed`` after it; with ``read_backs_fail`` no read-back of a lost send gets a
    connection."""

    def __init__(self, db: Any, rolled_back: set[int], committed: frozenset[int] = frozenset(),
                 read_backs_fail: bool = False) -> None:
        self._db, self.sends, self.statements = db, 0, 0
        self._rolled_back, self._committed = rolled_back, committed
        self._read_backs_fail = read_backs_fail
        self.read_back_error: Exception = _lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Any]:
        with self._db.transaction(write=write) as tx:
            counted = _Counted(tx)
            yield counted
            if counted.inserted:
                self.sends += 1
                if self.sends in self._rolled_back:
                    raise _lost()
            elif write and self._read_backs_fail and self.sends:
                raise self.read_back_error
        if counted.inserted and self.sends in self._committed:
            raise _lost()

    def statement(self, sql: str, params: Any = ()) -> Any:
        """A batch sent as one statement (PostgreSQL, the head known): a send like the others."""
        self.sends += 1
        self.statements += 1
        if self.sends in self._rolled_back:
            raise _lost()  # never reached the server
        rows = self._db.statement(sql, params)
        if self.sends in self._committed:
            raise _lost()
        return rows


def _lost() -> ConnectionLost:
    return ConnectionLost("audit database cannot be used", reason="test_lost")


class _Counted:
    def __init__(self, tx: Any) -> None:
        self._tx, self.inserted = tx, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def executemany(self, sql: str, rows: Any) -> Any:
        self.inserted = self.inserted or sql.startswith("INSERT INTO records")
        return self._tx.executemany(sql, rows)


@pytest.mark.parametrize(("rolled_back", "committed"), [
    ({1, 3}, frozenset()),  # part 1's first send, then part 2's first send
    ({2}, frozenset({1})),  # part 1 lost after its commit (read back: stored), part 2 once
    ({1}, frozenset({2})),  # part 1 lost, then lost after its commit on the second try
], ids=["each part lost once", "stored then lost", "stored on the second try"])
def test_each_part_of_a_split_batch_has_its_own_attempts(
        target: Path | str, keys: AuditKeys, make_record: Any, rolled_back: set[int],
        committed: frozenset[int]) -> None:
    """Lost connections in several parts of a batch of 25 (every 10): each part is read back
    and, unless found stored, written again once, so all 25 are stored."""
    with anchored(target, keys) as store:
        store._chain._db = LosingSends(  # type: ignore[assignment]
            store._chain._db, rolled_back, committed)
        answers = store._chain.write(contents(make_record, 25, "l"))
        assert [a.seq for a in answers if isinstance(a, Appended)] == list(range(1, 26))
        assert checkpoint_seqs(store) == [10, 20]


def test_records_read_back_as_not_stored_or_never_sent_are_plainly_unavailable(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """Part 2 loses its connection on both attempts: its records were read back as not stored
    and part 3's never sent, so each is answered a plain ``Unavailable`` (not stored), not
    ``ConnectionLost`` (may be stored); part 1's are stored."""
    with anchored(target, keys) as store:
        store._chain._db = LosingSends(store._chain._db, {2, 3})  # type: ignore[assignment]
        answers = store._chain.write(contents(make_record, 25, "u"))
        assert [a.seq for a in answers[:10] if isinstance(a, Appended)] == list(range(1, 11))
        assert [type(a) for a in answers[10:]] == [Unavailable] * 15
        assert len(store.snapshot().rows) == 10


def test_records_never_sent_are_not_stored_when_the_read_back_cannot_tell(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """Part 1's send is lost and no read-back gets a connection: its 10 records may be stored
    (``ConnectionLost``), but the 15 the split kept out of that transaction were never sent
    (a plain ``Unavailable``), so the batch is answered record by record, not raised whole."""
    with anchored(target, keys) as store:
        store._chain._db = LosingSends(  # type: ignore[assignment]
            store._chain._db, rolled_back={1}, read_backs_fail=True)
        answers = store._chain.write(contents(make_record, 25, "n"))
        assert [type(a) for a in answers] == [ConnectionLost] * 10 + [Unavailable] * 15


def test_two_stores_sharing_a_writer_name_keep_the_bound(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """Two stores of writer ``svc`` (as two processes would), 8 threads each: each store's own
    count of checkpoints falls behind the other's appends, and the database's says where the
    bound is, so no two checkpoints are more than ``every_records`` apart."""
    stores = [anchored(target, keys) for _ in range(2)]
    try:
        start = threading.Barrier(16, timeout=30)

        def append(thread: int) -> None:
            start.wait()
            for i in range(15):
                stores[thread % 2].append(make_record(resource=f"s-{thread}-{i}"))

        with ThreadPoolExecutor(16) as pool:  # a thread's exception fails the test here
            list(pool.map(append, range(16)))
        seqs = [0, *checkpoint_seqs(stores[0])]
    finally:
        for store in stores:
            store.close()
    assert max(later - earlier for earlier, later in itertools.pairwise(seqs)) <= EVERY, seqs
    assert 240 - seqs[-1] <= EVERY


def test_a_read_back_the_store_refuses_leaves_the_stored_part_its_answers(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """Part 2's send is lost and its read-back refused outright (the store closed meanwhile,
    say): part 1's records keep their answers, part 2's may be stored, part 3's were never
    sent; nothing is raised for the whole batch."""
    with anchored(target, keys) as store:
        losing = LosingSends(store._chain._db, rolled_back={2}, read_backs_fail=True)
        losing.read_back_error = ValueError("audit database is closed")
        store._chain._db = losing  # type: ignore[assignment]
        answers = store._chain.write(contents(make_record, 25, "v"))
        assert [a.seq for a in answers[:10] if isinstance(a, Appended)] == list(range(1, 11))
        assert [type(a) for a in answers[10:]] == [ConnectionLost] * 10 + [Unavailable] * 5
        assert isinstance(answers[10].__cause__, ValueError)


def test_on_postgresql_a_batch_after_a_known_head_is_one_statement(
        target: Path | str, keys: AuditKeys, make_record: Any) -> None:
    """The first append reads the head (the statements, under the lock); every later one, the
    head and the bound known, is one statement on PostgreSQL; on SQLite all are transactions.
    A batch ending at a checkpoint's seq is followed by the checkpoint either way."""
    with anchored(target, keys) as store:
        sends = LosingSends(store._chain._db, rolled_back=set())  # no faults: counted only
        store._chain._db = sends  # type: ignore[assignment]
        for i in range(25):
            store.append(make_record(resource=f"one-{i}"))
        assert checkpoint_seqs(store) == [10, 20]
        assert store.verify().ok
    one_statement = isinstance(target, str)
    assert (sends.sends - sends.statements, sends.statements) == (
        (1, 24) if one_statement else (25, 0))
