"""A run revoked whole by the orchestrator's own processes: by run id at the revocation registry
(every token of the run refused from then on, at the authorization server and at every service)
and audited as the authorization server audits a revocation by run (``revoke`` of
``run_id:<run>``, ``allow``/``run_revoked``, by ``client:orchestrator``, its request id naming
why: ``<run>.<cause>``).

Two callers: the run deadline revokes an overdue run before it ends it
(:mod:`orchestrator._deadline`), and the webhook receiver revokes a run it superseded, a start
whose delivery a redelivery took over after the run was marked running (:mod:`orchestrator.ci`):
whatever that start published is stale, and its tokens are refused too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from orchestrator._log import get_logger
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.errors import Unavailable
from orchestrator.identity import RevocationStore
from orchestrator.runs import Run

ACTOR = "client:orchestrator"


class RunReader(Protocol):
    def get(self, run_id: str) -> Run | None: ...


class RunRevocation:
    """Revokes runs at ``revocation`` and records each in ``audit`` (None: not audited)."""

    def __init__(self, revocation: RevocationStore, runs: RunReader, audit: AuditStore | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._revocation = revocation
        self._runs = runs
        self._audit = audit
        self._clock = clock

    def revoke(self, run_id: str) -> None:
        """Every token of ``run_id`` refused from now on; :class:`Unavailable` if the registry
        cannot be reached (nothing is revoked: the caller decides what that means)."""
        self._revocation.revoke_run(run_id)

    def record(self, run_id: str, cause: str) -> None:
        """The audit record of ``run_id``'s revocation for ``cause`` (joined to the run's trace);
        a record that cannot be written is logged (the revocation stands)."""
        if self._audit is None:
            return
        try:
            run = self._runs.get(run_id)
            self._audit.append(AuditRecord(
                time=datetime.fromtimestamp(self._clock(), UTC), service="orchestrator",
                action="revoke", resource=f"run_id:{run_id}", decision="allow",
                reason="run_revoked", performed_by=ACTOR,
                on_behalf_of=run.user if run else None, run_id=run_id,
                context={"trace_id": run.trace_id} if run and run.trace_id else {},
                request_id=f"{run_id}.{cause}", status=200))
        except (Unavailable, ValueError):
            get_logger(run_id=run_id).exception("run_revocation_audit_failed", cause=cause)
