"""Group commit (orchestrator/audit/_group.py): callers that arrive while a batch is written share
the next write, and each is answered only with its own item's outcome, after that write."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.audit._group import MAX_BATCH, GroupCommit
from orchestrator.errors import Unavailable


class _Gated:
    """A write that holds its first batch until released, recording every batch it wrote."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release.wait(10)
        return [Unavailable("odd", reason="odd_item") if i % 7 == 6 else i * 10 for i in items]


def _queued(group: GroupCommit[int, int], count: int) -> bool:
    with group._mutex:  # the test waits until the callers are queued
        return len(group._queue) == count


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    write = _Gated()
    group: GroupCommit[int, int] = GroupCommit(write)
    with ThreadPoolExecutor(max_workers=9) as pool:
        first = pool.submit(group.submit, 0)
        assert write.first_started.wait(10)
        rest = {i: pool.submit(group.submit, i) for i in range(1, 9)}
        for _ in range(500):  # bounded: until all eight wait behind the first write
            if _queued(group, 8):
                break
            threading.Event().wait(0.01)
        assert _queued(group, 8)
        assert not any(f.done() for f in rest.values())  # nobody is answered before its write
        write.release.set()
        assert first.result(10) == 0
        answers = {i: f.exception(10) or f.result(10) for i, f in rest.items()}
    assert write.batches == [[0], [1, 2, 3, 4, 5, 6, 7, 8]]  # two writes for nine items
    assert {i: a for i, a in answers.items() if not isinstance(a, Exception)} == {
        i: i * 10 for i in range(1, 9) if i != 6}
    refused = answers[6]
    assert isinstance(refused, Unavailable) and refused.reason == "odd_item"


def test_a_lone_caller_is_written_at_once() -> None:
    batches: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(write)
    assert [group.submit(i) for i in range(3)] == [0, 1, 2]
    assert batches == [[0], [1], [2]]


def test_a_failed_write_fails_every_caller_of_its_batch_and_the_next_batch_goes_on() -> None:
    calls: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise Unavailable("disk gone", reason="audit_unavailable")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(Unavailable) as caught:
        group.submit(1)
    assert caught.value.reason == "audit_unavailable"
    assert group.submit(2) == 2


def test_a_batch_holds_at_most_max_batch_items() -> None:
    write = _Gated()
    group: GroupCommit[int, int] = GroupCommit(write)
    count = MAX_BATCH + 5
    with ThreadPoolExecutor(max_workers=count + 1) as pool:
        first = pool.submit(group.submit, 0)
        assert write.first_started.wait(10)
        rest = [pool.submit(group.submit, 7 * i + 1) for i in range(count)]
        for _ in range(1000):
            if _queued(group, count):
                break
            threading.Event().wait(0.01)
        assert _queued(group, count)
        write.release.set()
        first.result(10)
        assert [f.result(10) for f in rest] == [(7 * i + 1) * 10 for i in range(count)]
    assert [len(b) for b in write.batches] == [1, MAX_BATCH, 5]


def test_many_callers_each_get_their_own_answer_in_fewer_writes_and_in_order() -> None:
    """16 threads, 100 items each, a write that takes a moment: every caller gets its own
    item's answer, items are written in each thread's order, and writes carry many items (the
    lead passes from write to write without waking every waiting thread)."""
    batches: list[list[tuple[int, int]]] = []

    def write(items: Sequence[tuple[int, int]]) -> list[tuple[int, int] | Exception]:
        batches.append(list(items))
        threading.Event().wait(0.001)
        return [(thread, n * 2) for thread, n in items]

    group: GroupCommit[tuple[int, int], tuple[int, int]] = GroupCommit(write)

    def caller(thread: int) -> list[tuple[int, int]]:
        return [group.submit((thread, n)) for n in range(100)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(caller, range(16)))
    assert answers == [[(thread, n * 2) for n in range(100)] for thread in range(16)]
    written = [item for batch in batches for item in batch]
    assert sorted(written) == [(t, n) for t in range(16) for n in range(100)]
    for thread in range(16):
        assert [n for t, n in written if t == thread] == list(range(100))
    assert len(batches) < 1600 / 4, f"{len(batches)} writes for 1600 items"
    assert not group._queue and not group._writing


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler for the test, whatever this process inherited (a shell starts
    a background job with SIGINT ignored: the interrupt would never come)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("default_sigint")
def test_a_caller_interrupted_while_queued_leaves_and_the_others_go_on() -> None:
    """The main thread, queued behind a write, gets KeyboardInterrupt (SIGINT): it leaves the
    queue, its item is never written, and the callers queued with it are written next."""
    write = _Gated()
    group: GroupCommit[int, int] = GroupCommit(write)
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(group.submit, 0)
        assert write.first_started.wait(10)
        second = pool.submit(group.submit, 1)
        for _ in range(500):
            if _queued(group, 1):
                break
            threading.Event().wait(0.01)
        main = threading.get_ident()

        def interrupt() -> None:
            for _ in range(500):  # until the main thread is queued behind the gated write
                if _queued(group, 2):
                    break
                threading.Event().wait(0.01)
            signal.pthread_kill(main, signal.SIGINT)

        pool.submit(interrupt)
        with pytest.raises(KeyboardInterrupt):
            group.submit(2)
        assert _queued(group, 1)
        write.release.set()
        assert (first.result(10), second.result(10)) == (0, 10)
    assert group.submit(3) == 30
    assert write.batches == [[0], [1], [3]]
    assert not group._queue and not group._writing
