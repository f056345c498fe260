"""Requests that carry no credential at all, audited without letting an anonymous client grow
the trail without bound.

Per service, per source address and per minute: the first such request is recorded as any
other; the further ones in that minute are counted, not recorded, and the count is written as
one summary record (action ``requests:anonymous``, reason ``anonymous_summary``, resource
``source:<address> count:<n>``, the same in ``context``) when the minute has passed, checked at
every request the service answers, or when the service stops (:meth:`AnonymousTrail.drain`).
At most :data:`MAX_SOURCES` windows are open; a new source beyond that closes them all first, so
memory stays bounded and no count is lost.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.audit import AuditRecord

MAX_SOURCES = 4096
SUMMARY_ACTION, SUMMARY_REASON = "requests:anonymous", "anonymous_summary"


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
                 "minute": start.strftime("%Y-%m-%dT%H:%MZ")})
