"""A clock a test moves instead of sleeping: ``time.time()`` plus an offset, counting its reads so
the test can wait until whatever reads it (a background sweep) has seen the new time."""

from __future__ import annotations

import threading
import time


class MovableClock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._reads = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self._reads += 1
            self._changed.notify_all()
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._offset += seconds

    def wait_reads(self, count: int, timeout: float = 10.0) -> None:
        """Return once the clock has been read ``count`` more times (a sweep reads it once as
        it starts: two reads mean at least one whole sweep saw the time as it is now)."""
        with self._changed:
            target = self._reads + count
            if not self._changed.wait_for(lambda: self._reads >= target, timeout):
                raise AssertionError(f"the clock was not read {count} times in {timeout} s")
