"""Group commit: concurrent callers' items written together, each caller answered only once the
transaction holding its item has committed.

No thread of its own: the first caller that finds no write in progress becomes the leader and
writes every item waiting (up to :data:`MAX_BATCH`) in one call of ``write``; the callers that
arrive meanwhile wait, and the next of them to find the write done leads the next batch. A
lone caller is written at once, so group commit adds no wait when there is nothing to group;
under concurrency one transaction (one commit, one flush to disk, one round trip) carries many
items. ``write`` answers per item, a result or the exception that item's caller raises, or
raises for the whole batch: then every caller of that batch raises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256


class _Waiting(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """``submit(item)`` returns ``write([..., item, ...])``'s answer for ``item``; thread-safe."""

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Result | Exception]]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._queue: list[_Waiting[Item, Result]] = []
        self._writing = False

    def submit(self, item: Item) -> Result:
        waiting: _Waiting[Item, Result] = _Waiting(item)
        with self._cond:
            self._queue.append(waiting)
            while not waiting.done:
                if self._writing:
                    self._cond.wait()
                    continue
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._writing = True
                self._cond.release()
                try:
                    self._lead(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if waiting.error is not None:
            raise waiting.error
        return waiting.result  # type: ignore[return-value]

    def _lead(self, batch: list[_Waiting[Item, Result]]) -> None:
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
