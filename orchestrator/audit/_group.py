"""Group commit: concurrent callers' items written together, each caller answered only once the
transaction holding its item has committed.

No thread of its own: the first caller that finds no write in progress becomes the leader and
writes its item and every item waiting (up to :data:`MAX_BATCH`) in one call of ``write``; the
callers that arrive meanwhile queue. When the write returns, the leader hands the lead to the
first caller still queued (if any), which writes the next batch at once, then wakes the callers
of its own batch: each sleeps on a lock of its own, so a write wakes exactly the callers it
answered and the next leader, never every waiting thread. A lone caller is written at once, so
group commit adds no wait when there is nothing to group; under concurrency one transaction
(one commit, one flush to disk, one round trip) carries many items. ``write`` answers per item,
a result or the exception that item's caller raises, or raises for the whole batch: then every
caller of that batch raises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256


class _Waiting(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "lead", "result", "wake")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.lead = False  # handed the lead (set under the mutex, before ``wake`` is released)
        self.wake = threading.Lock()  # held until a leader answers this caller or hands it the lead
        self.wake.acquire()


class GroupCommit(Generic[Item, Result]):
    """``submit(item)`` returns ``write([..., item, ...])``'s answer for ``item``; thread-safe."""

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Result | Exception]]) -> None:
        self._write = write
        self._mutex = threading.Lock()
        self._queue: list[_Waiting[Item, Result]] = []
        self._writing = False

    def submit(self, item: Item) -> Result:
        waiting: _Waiting[Item, Result] = _Waiting(item)
        with self._mutex:
            follow = self._writing
            if follow:
                self._queue.append(waiting)
            self._writing = True
        if follow:
            try:
                waiting.wake.acquire()  # answered, or handed the lead
            except BaseException:
                self._leave(waiting)
                raise
        if not waiting.done:
            self._lead(waiting)
        if waiting.error is not None:
            raise waiting.error
        return waiting.result  # type: ignore[return-value]

    def _lead(self, first: _Waiting[Item, Result]) -> None:
        """Write ``first`` and what is queued behind it, answer them, pass the lead on."""
        with self._mutex:
            batch, self._queue = [first, *self._queue[: MAX_BATCH - 1]], \
                self._queue[MAX_BATCH - 1 :]
        try:
            self._answer(batch)
        finally:
            with self._mutex:
                following = self._queue.pop(0) if self._queue else None
                self._writing = following is not None
                if following is not None:
                    following.lead = True
            if following is not None:
                following.wake.release()
            for waiting in batch[1:]:
                waiting.wake.release()

    def _leave(self, waiting: _Waiting[Item, Result]) -> None:
        """A caller interrupted while it waited (``KeyboardInterrupt`` in the main thread):
        still queued, it leaves the queue (its item is not written); handed the lead, it writes
        the next batch first, so the callers queued behind it are not stranded; in a batch being
        written, its answer is simply never read."""
        with self._mutex:
            queued = any(other is waiting for other in self._queue)
            if queued:
                self._queue = [other for other in self._queue if other is not waiting]
        if not queued and waiting.lead and not waiting.done:
            self._lead(waiting)

    def _answer(self, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            results = self._write([waiting.item for waiting in batch])
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            for waiting in batch:
                waiting.error, waiting.done = exc, True
            return
        for waiting, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                waiting.error = result
            else:
                waiting.result = result
            waiting.done = True
