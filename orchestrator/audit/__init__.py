"""Tamper-evident audit trail: structured records, an append-only hash-chained SQLite store,
verification, and export (JSON lines, OCSF API Activity) and a table for people.

Every call at every service and every exchange at the authorization server is one
:class:`AuditRecord`; :class:`AuditStore` appends it to a per-writer hash chain and
:meth:`AuditStore.verify` names every edit, deletion, insertion or reordering it finds.
Records never hold a raw token.
"""

from orchestrator.audit._chain import GENESIS_HASH
from orchestrator.audit._export import activity_id, to_jsonl, to_ocsf
from orchestrator.audit._record import AuditRecord, Decision, StoredRecord, contains_raw_jwt
from orchestrator.audit._store import AuditStore
from orchestrator.audit._table import render_table
from orchestrator.audit._verify import Problem, ProblemKind, VerifyReport

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "AuditStore",
    "Decision",
    "Problem",
    "ProblemKind",
    "StoredRecord",
    "VerifyReport",
    "activity_id",
    "contains_raw_jwt",
    "render_table",
    "to_jsonl",
    "to_ocsf",
]
