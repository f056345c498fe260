"""The runs' spans in the run log, on SQLite and on PostgreSQL: kept by trace, read back in
start order, written once, never holding a token; and their waterfall's tree order."""

from __future__ import annotations

import pytest

from orchestrator.runs import RunStore, SpanLog, SpanRecord, waterfall_rows

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(span_id: str, parent: str | None, start: int, end: int, **attributes: object
         ) -> SpanRecord:
    return SpanRecord(trace_id=TRACE, span_id=span_id, parent_id=parent, name=f"s-{span_id}",
                      service="infrabot", start_ns=start, end_ns=end, status="ok",
                      attributes=dict(attributes))


def test_spans_are_kept_by_trace_and_read_in_start_order(store: RunStore) -> None:
    log = SpanLog(store)
    root = span("00000000000000a1", None, 1_796_000_000_000_000_000, 1_796_000_000_900_000_000)
    child = span("00000000000000b2", root.span_id, 1_796_000_000_100_000_000,
                 1_796_000_000_200_000_000, **{"infrabot.decision": "deny",
                                               "infrabot.reason": "scope_not_grantable"})
    log.add([child, root])
    log.add([child])  # an exporter's retry writes nothing twice
    assert log.of_trace(TRACE) == [root, child]
    assert log.of_trace("0" * 32) == []
    rows = waterfall_rows(log.of_trace(TRACE))
    assert [(r.depth, r.name, r.outcome) for r in rows] == [
        (0, "s-00000000000000a1", ""), (1, "s-00000000000000b2", "deny (scope_not_grantable)")]
    assert rows[1].start_ms == pytest.approx(100.0) and rows[1].duration_ms == pytest.approx(100.0)


def test_a_span_holding_a_token_is_refused(store: RunStore) -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"
    with pytest.raises(ValueError, match="raw JWT"):
        SpanLog(store).add([span("00000000000000c3", None, 1, 2, leak=token)])
    assert SpanLog(store).of_trace(TRACE) == []


def test_a_span_with_attributes_over_16_kib_is_kept_without_them(store: RunStore) -> None:
    """One span's oversized attributes never cost the rest of its batch."""
    small = span("00000000000000d4", None, 1, 3, **{"infrabot.decision": "allow"})
    large = span("00000000000000e5", small.span_id, 2, 3, note="x" * (16 * 1024))
    SpanLog(store).add([small, large])
    kept = SpanLog(store).of_trace(TRACE)
    assert [s.span_id for s in kept] == [small.span_id, large.span_id]
    assert kept[0] == small
    assert kept[1].attributes == {"infrabot.attributes_dropped": "16395 bytes, over 16384"}
