"""Tamper-evident audit trail: structured records, an append-only hash-chained SQLite store,
verification, signed checkpoints, and export (JSON lines, OCSF API Activity) and a table for
people.

Every call at every service and every exchange at the authorization server is one
:class:`AuditRecord`; :class:`AuditStore` appends it to a per-writer hash chain and
:meth:`AuditStore.verify` names every edit, deletion, insertion or reordering it finds.
Records never hold a raw token. A :class:`Checkpointer` signs the writer's head with the audit
key of its state directory (:class:`AuditKeys`, never in the database); :func:`check_trail`
verifies chains and checkpoints with trusted public keys and says which records are anchored.
Each checkpoint a writer signs is also kept outside the database as its anchor
(:mod:`._anchorfile`, ``<state_dir>/keys/audit/audit-anchor.json``), which :func:`check_trail`
holds the database to: checkpoints deleted with the records beneath them fail there.
"""

from orchestrator.audit._anchor import AnchorPolicy, TrailReport, WriterAnchor, check_trail
from orchestrator.audit._chain import GENESIS_HASH
from orchestrator.audit._checkpoint import Checkpointer, CheckpointRow, checkpoint_ticker
from orchestrator.audit._export import activity_id, to_jsonl, to_ocsf
from orchestrator.audit._keys import AuditKeys, public_document, trusted_keys
from orchestrator.audit._record import AuditRecord, Decision, StoredRecord, contains_raw_jwt
from orchestrator.audit._store import AuditStore
from orchestrator.audit._table import render_table
from orchestrator.audit._verify import Problem, ProblemKind, VerifyReport

__all__ = [
    "GENESIS_HASH",
    "AnchorPolicy",
    "AuditKeys",
    "AuditRecord",
    "AuditStore",
    "CheckpointRow",
    "Checkpointer",
    "Decision",
    "Problem",
    "ProblemKind",
    "StoredRecord",
    "TrailReport",
    "VerifyReport",
    "WriterAnchor",
    "activity_id",
    "check_trail",
    "checkpoint_ticker",
    "contains_raw_jwt",
    "public_document",
    "render_table",
    "to_jsonl",
    "to_ocsf",
    "trusted_keys",
]
