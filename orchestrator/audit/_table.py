"""The audit table as the reference article draws it, plus service, decision and reason.

:func:`render_table` is the table itself; :class:`AuditView` is what terminals get: that table
when it has room (``STACK_BELOW`` columns or more), each identity whole, and below that one
block per record, so nothing is cut however narrow the terminal."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from orchestrator._display import display_safe
from orchestrator.audit._record import AuditRecord

COLUMNS = (
    "Timestamp",
    "Action",
    "Performed by",
    "On behalf of",
    "Resource",
    "Service",
    "Decision",
    "Reason",
)
_DECISION_STYLE = {"allow": "green", "deny": "bold red"}
_WHOLE = ("Action", "Performed by", "On behalf of", "Service")  # never wrapped in the table
STACK_BELOW = 120  # narrower than this, records are stacked, one block each
_MAX_WHOLE = 40  # a longer identity may wrap after all (it is folded, never cut)


def table_time(value: datetime) -> str:
    """``2025-07-18T16:10:03Z``: UTC, whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_table(records: Iterable[AuditRecord], *, title: str | None = "Audit trail") -> Table:
    """A rich table, one row per record, in the order given.

    Every cell is plain :class:`~rich.text.Text`: record values are never read as console markup
    (a resource named ``[black on black]`` cannot hide a row), and control characters,
    bidirectional overrides and other invisible characters are shown as escapes
    (:func:`~orchestrator._display.display_safe`). Identities are kept whole (each column at
    least as wide as its longest value); resources and reasons wrap, folded, never cut.
    """
    rows = [_cells(record) for record in records]
    table = Table(title=title)
    for index, name in enumerate(COLUMNS):
        widest = max((len(row[index]) for row in rows), default=0)
        whole = name in _WHOLE or name in ("Timestamp", "Decision")
        table.add_column(name, no_wrap=whole and widest <= _MAX_WHOLE, overflow="fold",
                         min_width=min(widest, _MAX_WHOLE) if whole else None)
    for row in rows:
        *cells, decision, reason = row
        table.add_row(*(Text(cell) for cell in cells),
                      Text(decision, style=_DECISION_STYLE.get(decision, "")), Text(reason))
    return table


def _cells(record: AuditRecord) -> tuple[str, ...]:
    return tuple(display_safe(cell) for cell in (
        table_time(record.time), record.action, record.performed_by or "-",
        record.principal or "-", record.resource, record.service, record.decision,
        record.reason))


def render_stacked(records: Iterable[AuditRecord]) -> Group:
    """One block per record: time, action and decision on the first line, then the rest
    labelled, each value on its own line (wrapped, folded, never cut)."""
    blocks: list[RenderableType] = []
    for record in records:
        when, action, by, behalf, resource, service, decision, reason = _cells(record)
        head = Text.assemble((when, "bold"), "  ", action, "  ",
                             (decision, _DECISION_STYLE.get(decision, "")))
        body = Table.grid(padding=(0, 2), pad_edge=True)
        body.add_column(style="dim", no_wrap=True)
        body.add_column(overflow="fold")
        for label, value in (("performed by", by), ("on behalf of", behalf),
                             ("resource", resource), ("service", service), ("reason", reason)):
            body.add_row(Text(label), Text(value))
        blocks += [head, body]
    return Group(*blocks)


class AuditView:
    """The records as a terminal of any width shows them: the table from ``STACK_BELOW``
    columns, stacked blocks below (decided where it is drawn, so inside a panel too)."""

    def __init__(self, records: Iterable[AuditRecord], *, title: str | None = "Audit trail"
                 ) -> None:
        self.records = list(records)
        self.title = title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= STACK_BELOW:
            yield render_table(self.records, title=self.title)
            return
        if self.title:
            yield Text(self.title, style="italic")
        yield render_stacked(self.records)
