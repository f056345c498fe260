"""The audit table as the reference article draws it, plus service, decision and reason."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

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


def table_time(value: datetime) -> str:
    """``2025-07-18T16:10:03Z``: UTC, whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_table(records: Iterable[AuditRecord], *, title: str | None = "Audit trail") -> Table:
    """A rich table, one row per record, in the order given.

    Every cell is plain :class:`~rich.text.Text`: record values are never read as console markup
    (a resource named ``[black on black]`` cannot hide a row), and control characters,
    bidirectional overrides and other invisible characters are shown as escapes
    (:func:`~orchestrator._display.display_safe`).
    """
    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, no_wrap=name in ("Timestamp", "Decision"))
    for record in records:
        cells = (
            table_time(record.time),
            record.action,
            record.performed_by or "-",
            record.on_behalf_of or "-",
            record.resource,
            record.service,
        )
        table.add_row(
            *(Text(display_safe(cell)) for cell in cells),
            Text(record.decision, style=_DECISION_STYLE[record.decision]),
            Text(display_safe(record.reason)),
        )
    return table
