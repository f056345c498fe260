"""A run's trace as a waterfall (docs/tracing.md): each span on its line, indented under its
parent, with its start, its duration and a bar on one time axis; what a hop, an exchange or a
call decided beside it. ``runs show RUN --trace`` prints it; the HTML report draws the same
rows (:func:`waterfall_rows`)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator._display import display_safe
from orchestrator.runs._spans import SpanRecord

BAR_WIDTH = 40


@dataclass(frozen=True)
class WaterfallRow:
    """One span of the waterfall: depth under the root, start and length in ms from the
    trace's start, and what it decided (``decision (reason)``, or empty)."""

    depth: int
    name: str
    start_ms: float
    duration_ms: float
    outcome: str
    error: bool


def waterfall_rows(spans: list[SpanRecord]) -> list[WaterfallRow]:
    """The spans in tree order (children after their parent, by start time)."""
    if not spans:
        return []
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    origin = min(s.start_ns for s in spans)
    rows: list[WaterfallRow] = []
    stack = [(s, 0) for s in sorted(children.get(None, []), key=_start, reverse=True)]
    while stack:
        span, depth = stack.pop()
        rows.append(WaterfallRow(depth, _label(span), (span.start_ns - origin) / 1e6,
                                 span.duration_ms, _outcome(span), span.status == "error"))
        stack.extend((c, depth + 1)
                     for c in sorted(children.get(span.span_id, []), key=_start, reverse=True))
    return rows


def render_waterfall(spans: list[SpanRecord]) -> RenderableType:
    rows = waterfall_rows(spans)
    if not rows:
        return Text("no spans kept for this run (tracing off, or sent over OTLP)")
    total = max(r.start_ms + r.duration_ms for r in rows) or 1.0
    table = Table(title=f"trace {spans[0].trace_id}", title_justify="left", expand=False)
    table.add_column("span", no_wrap=True)
    table.add_column("+ms", justify="right", no_wrap=True, min_width=7)
    table.add_column("ms", justify="right", no_wrap=True, min_width=6)
    table.add_column("", no_wrap=True)
    table.add_column("decision", overflow="fold")
    for row in rows:
        start = int(row.start_ms / total * BAR_WIDTH)
        length = max(1, int(row.duration_ms / total * BAR_WIDTH))
        bar = " " * start + "█" * min(length, BAR_WIDTH - start)
        style = "red" if row.error or row.outcome.startswith("deny") else ""
        table.add_row(Text("  " * row.depth + display_safe(row.name)), f"{row.start_ms:.1f}",
                      f"{row.duration_ms:.1f}", Text(bar, style="cyan"),
                      Text(display_safe(row.outcome), style=style))
    return table


def _start(span: SpanRecord) -> int:
    return span.start_ns


def _label(span: SpanRecord) -> str:
    agent = span.attributes.get("infrabot.agent")
    return f"{span.name} [{agent}]" if isinstance(agent, str) else span.name


def _outcome(span: SpanRecord) -> str:
    decision, reason = (span.attributes.get(f"infrabot.{k}") for k in ("decision", "reason"))
    if not isinstance(decision, str):
        return ""
    return f"{decision} ({reason})" if isinstance(reason, str) and reason != "ok" else decision
