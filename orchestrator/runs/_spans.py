"""The spans of the runs in the run log (docs/tracing.md): what embedded and distributed mode
keep when no OTLP endpoint is set, so ``runs show RUN --trace`` and the HTML report can draw a
run's waterfall. Each process's exporter appends the spans it finished; a run's spans are those
of its trace. Attributes are checked as event details are: JSON, and never a raw JWT."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.audit import contains_raw_jwt
from orchestrator.runs._store import RunStore

MAX_ATTRIBUTES_BYTES = 16 * 1024
DROPPED_ATTRIBUTE = "infrabot.attributes_dropped"
_CHUNK = 100  # rows per INSERT: 900 parameters, under SQLite's and PostgreSQL's limits
_COLUMNS = ("trace_id, span_id, parent_id, name, service, start_ns, end_ns, status, "
            "attributes")


@dataclass(frozen=True)
class SpanRecord:
    """One finished span: ids are lower-case hex (32 and 16 digits), times in nanoseconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def attributes_json(attributes: dict[str, Any]) -> str:
    """A span's attributes as stored JSON; ValueError for anything shaped like a raw JWT (the
    log never holds a token). Attributes larger than 16 KiB are not kept: the span is, with
    ``infrabot.attributes_dropped`` saying how large they were (one span's attributes never
    cost the rest of its batch)."""
    text = json.dumps(attributes, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if contains_raw_jwt(text):
        raise ValueError("span attributes look like a raw JWT; the run log never stores tokens")
    size = len(text.encode())
    if size > MAX_ATTRIBUTES_BYTES:
        return json.dumps({DROPPED_ATTRIBUTE: f"{size} bytes, over {MAX_ATTRIBUTES_BYTES}"})
    return text


class SpanLog:
    """The spans table of a run log (:class:`RunStore`), sharing its file and transactions."""

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    def add(self, spans: Iterable[SpanRecord]) -> None:
        rows = [(s.trace_id, s.span_id, s.parent_id, s.name, s.service, s.start_ns, s.end_ns,
                 s.status, attributes_json(s.attributes)) for s in spans]
        if not rows:
            return
        with self._runs._write() as tx:  # one statement per chunk: a batch is one transaction
            for at in range(0, len(rows), _CHUNK):
                chunk = rows[at:at + _CHUNK]
                values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                tx.execute(f"INSERT INTO spans ({_COLUMNS}) VALUES {values} "
                           "ON CONFLICT (trace_id, span_id) DO NOTHING",
                           [value for row in chunk for value in row])

    def of_trace(self, trace_id: str) -> list[SpanRecord]:
        """The trace's spans, earliest first; none from a log that has no spans table."""
        if not self._runs._db.has_table("spans"):
            return []
        with self._runs._read() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ? "
                              "ORDER BY start_ns, span_id", (trace_id,)).fetchall()
        return [SpanRecord(trace_id=r[0], span_id=r[1], parent_id=r[2], name=r[3], service=r[4],
                           start_ns=r[5], end_ns=r[6], status=r[7],
                           attributes=json.loads(r[8])) for r in rows]
