"""Requests that carry no credential at all, audited without letting an anonymous client grow
the trail without bound.

Per service, per source address and per minute: the first such request is recorded as any
other; the further ones in that minute are counted, not recorded, and the count is written as
one summary record (action ``requests:anonymous``, reason ``anonymous_summary``, resource
``source:<address> count:<n>``, the same in ``context``) when the minute has passed, checked at
every request the service answers, or when the service stops (:meth:`AnonymousTrail.drain`).
At most :data:`MAX_SOURCES` windows are open; a new source beyond that closes them all first, so
memory stays bounded and no count is lost.

Summaries are appended apart from the record of the request that found them due
(:meth:`AnonymousTrail.write`): one that cannot be written is put back, its count into its
window (:meth:`AnonymousTrail.put_back`), and written again when that window next closes; the
windows put back may pass the bound until the next new source closes them all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.audit import AuditRecord

log = logging.getLogger("mock_services")
MAX_SOURCES = 4096
SUMMARY_ACTION, SUMMARY_REASON = "requests:anonymous", "anonymous_summary"
_MINUTE = "%Y-%m-%dT%H:%MZ"


@dataclass
class _Window:
    service: str
    more: int = 0  # requests counted, not recorded


class AnonymousTrail:
    def __init__(self, *, max_sources: int = MAX_SOURCES) -> None:
        self._windows: dict[tuple[str, int], _Window] = {}
        self._earliest: int | None = None
        self._max = max_sources
        self._lock = threading.Lock()

    def admit(self, source: str, service: str, now: float) -> tuple[bool, list[AuditRecord]]:
        """Whether this anonymous request is recorded itself (the first of its source's minute),
        and the summaries now due."""
        minute = int(now // 60)
        with self._lock:
            due = self._close_before(minute, now)
            window = self._windows.get((source, minute))
            if window is not None:
                window.more += 1
                return False, due
            if len(self._windows) >= self._max:
                due += self._close_before(None, now)
            self._windows[(source, minute)] = _Window(service)
            self._earliest = minute if self._earliest is None else min(self._earliest, minute)
            return True, due

    def due(self, now: float) -> list[AuditRecord]:
        """The summaries of the minutes that have passed (cheap when none has)."""
        minute = int(now // 60)
        if self._earliest is None or self._earliest >= minute:
            return []
        with self._lock:
            return self._close_before(minute, now)

    def drain(self, now: float) -> list[AuditRecord]:
        """Every open count, as summaries (when the service stops)."""
        with self._lock:
            return self._close_before(None, now)

    def write(self, summaries: list[AuditRecord],
              append: Callable[[AuditRecord], object]) -> None:
        """Append ``summaries`` in order; from the first that cannot be written on, they are
        put back (logged, never raised)."""
        for done, summary in enumerate(summaries):
            try:
                append(summary)
            except Exception:
                log.exception("audit_append_failed", extra={"service": summary.service})
                self.put_back(summaries[done:])
                return

    def put_back(self, summaries: list[AuditRecord]) -> None:
        """Summaries that were not written: each count goes back into its window (added to the
        window's own count if that is open again), to be summarised when the window closes."""
        with self._lock:
            for summary in summaries:
                context = summary.context
                start = datetime.strptime(context["minute"], _MINUTE).replace(tzinfo=UTC)
                minute = int(start.timestamp()) // 60
                window = self._windows.setdefault((context["source"], minute),
                                                  _Window(summary.service))
                window.more += int(context["count"])
                self._earliest = minute if self._earliest is None else min(self._earliest,
                                                                            minute)

    def _close_before(self, minute: int | None, now: float) -> list[AuditRecord]:
        closed = [key for key in self._windows if minute is None or key[1] < minute]
        summaries = [_summary(key, self._windows.pop(key), now) for key in closed]
        self._earliest = min((m for _, m in self._windows), default=None)
        return [s for s in summaries if s is not None]


def _summary(key: tuple[str, int], window: _Window, now: float) -> AuditRecord | None:
    if not window.more:
        return None
    source, minute = key
    start = datetime.fromtimestamp(minute * 60, UTC)
    return AuditRecord(
        time=datetime.fromtimestamp(now, UTC), service=window.service, action=SUMMARY_ACTION,
        resource=f"source:{source} count:{window.more}", decision="deny",
        reason=SUMMARY_REASON,
        context={"source": source, "count": str(window.more),
                 "minute": start.strftime(_MINUTE)})
