"""A background thread that calls one function every few seconds while a ``with`` block runs:
the run deadline's sweeps and the audit checkpointer's ticks; its loop (:func:`run_every`) also
serves a thread that lives as long as its process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestrator._log import get_logger


@contextmanager
def periodic(call: Callable[[], object], every: float, *, name: str, failure_event: str
             ) -> Iterator[None]:
    """Call ``call`` every ``every`` seconds on a daemon thread named ``name``; a call that
    raises is logged as ``failure_event`` and the next tick tries again. Stops (joining the
    thread for up to 10 s) when the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=run_every, args=(call, every, stop),
                              kwargs={"failure_event": failure_event}, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def run_every(call: Callable[[], object], every: float, stop: threading.Event, *,
              failure_event: str) -> None:
    """Until ``stop`` is set: wait ``every`` seconds, then ``call``; a call that raises is
    logged as ``failure_event`` and the next tick tries again. The loop of :func:`periodic`,
    for a thread that lives as long as its process (a worker's DPoP key renewal)."""
    while not stop.wait(every):
        try:
            call()
        except Exception:  # noqa: BLE001 - the thread must outlive a bad tick
            get_logger().exception(failure_event)
