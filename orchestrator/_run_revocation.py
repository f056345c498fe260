"""A run revoked whole by the orchestrator's own processes: by run id at the revocation registry
(every token of the run refused from then on, at the authorization server and at every service)
and audited as the authorization server audits a revocation by run (``revoke`` of
``run_id:<run>``, ``allow``/``run_revoked``, by ``client:orchestrator``, its request id naming
why: ``<run>.<cause>``).

Two callers: the webhook receiver revokes a run it superseded, a start whose delivery a
redelivery took over after the run was marked running (:mod:`orchestrator.ci`): whatever that
start published is stale, and its tokens are refused too; and every run's end is revoked and
recorded once it has ended (:mod:`orchestrator._run_end`), unless it is on record already: the
run deadline's too (:mod:`orchestrator._deadline` revokes an overdue run at the registry before
it ends it, and its record is written as that end is settled).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from orchestrator._log import get_logger
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.errors import Unavailable
from orchestrator.identity import RevocationStore
from orchestrator.runs import Run

ACTOR = "client:orchestrator"


class RunReader(Protocol):
    def get(self, run_id: str, *, kinds: Sequence[str] | None = None) -> Run | None: ...


class RunRevocation:
    """Revokes runs at ``revocation`` and records each in ``audit`` (None: not audited)."""

    def __init__(self, revocation: RevocationStore, runs: RunReader, audit: AuditStore | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._revocation = revocation
        self._runs = runs
        self._audit = audit
        self._clock = clock

    def revoke(self, run_id: str, *, expires_at: int | None = None) -> bool:
        """Every token of ``run_id`` refused from now on (until ``expires_at``, when its last
        token has expired; None: for a day); True if it was not revoked already.
        :class:`Unavailable` if the registry cannot be reached (nothing is revoked: the caller
        decides what that means)."""
        return self._revocation.revoke_run(run_id, expires_at=expires_at)

    def recorded(self, run_id: str, cause: str) -> bool:
        """Whether ``run_id``'s revocation for ``cause`` is on record already (True when
        nothing is recorded here); what the audit store raises when it cannot be read."""
        if self._audit is None:
            return True
        request_id = f"{run_id}.{cause}"
        return any(r.request_id == request_id for r in self._audit.query(
            run_id=run_id, service="orchestrator", action="revoke"))

    def record(self, run_id: str, cause: str) -> bool:
        """The audit record of ``run_id``'s revocation for ``cause``, on behalf of its user and
        joined to its trace as its other records are; False if the audit store could not be
        reached. A record that cannot be written at all (the run's row holds what no record
        may) is given up. Either is logged; the revocation stands."""
        if self._audit is None:
            return True
        try:
            run = self._runs.get(run_id, kinds=("started",))  # its user, trace and provider
            self._audit.append(AuditRecord(
                time=datetime.fromtimestamp(self._clock(), UTC), service="orchestrator",
                action="revoke", resource=f"run_id:{run_id}", decision="allow",
                reason="run_revoked", performed_by=ACTOR,
                on_behalf_of=run.user if run else None, run_id=run_id,
                context=_context(run),
                request_id=f"{run_id}.{cause}", status=200))
        except Unavailable:
            get_logger(run_id=run_id).exception("run_revocation_audit_failed", cause=cause)
            return False
        except ValueError:
            get_logger(run_id=run_id).exception("run_revocation_audit_failed", cause=cause)
        return True


def _context(run: Run | None) -> dict[str, str]:
    """What the run's other records carry of it: its trace, and the provider that vouched for
    its user (shown as ``user:sam (via <issuer>)``)."""
    if run is None:
        return {}
    return {key: value for key, value in (("trace_id", run.trace_id), ("idp", run.idp)) if value}
