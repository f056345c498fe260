"""Revocation mid-run, distributed: only InfraBot's queue has a worker at first, so the run
stops between hops; the revocation reaches the authorization server over HTTP and the registry
in Redis; then an ArgoCD worker starts, and its hop is refused with the exact reason."""

from __future__ import annotations

import pytest

from e2e._harness import (
    SAM,
    accepted_run_id,
    deployment,
    events_of,
    first_time_counts,
)
from e2e._processes import Distributed
from infrabot.stack import ORCHESTRATOR_CLIENT

pytestmark = pytest.mark.redis


def start_and_pause_after_infrabot(d: Distributed) -> str:
    d.serve()
    infrabot = d.worker(queues=["infrabot"])
    run_id = accepted_run_id(d.webhook(deployment("sam")))
    run = d.wait_hop(run_id, "agent:infrabot")
    assert run.status == "running"
    assert [x.to for x in events_of(run, "handed_off")] == \
        ["agent:argocd", "agent:scanner", "agent:cleanup"]
    d.stop(infrabot)
    return run_id


def assert_argocd_refused(d: Distributed, run_id: str, reason: str) -> None:
    d.worker(queues=["argocd"])  # the scanner's branch waits: ArgoCD's alone is refused
    run = d.wait_hop(run_id, "agent:argocd")
    assert [(x.for_, x.error, x.reason) for x in events_of(run, "exchange_denied")] == \
        [("github.deployment_status.create", "invalid_request", reason)]
    assert next(e.detail for e in run.events if e.kind == "branch_ended").reason == \
        f"agent:argocd exchange for github.deployment_status.create: invalid_request ({reason})"
    assert events_of(run, "called", "agent:argocd") == []
    with d.audit() as audit:
        records = audit.query(run_id=run_id)
        # The refusal's record does not name the run (nor the user, nor the chain): the
        # authorization server audits a subject token refused as revoked without its claims.
        # So it is found by agent and decision; this serve process ran nothing else (but the
        # workers' DPoP key registrations, whose first try per process gets the server's
        # nonce, audited as use_dpop_nonce refusals of the dpop_key action).
        denied = [r for r in audit.query(decision="deny") if r.action != "dpop_key"]
    assert [(r.service, r.action, r.performed_by, r.reason, r.status) for r in denied] == \
        [("authserver", "token_exchange", "agent:argocd", reason, 400)]
    assert first_time_counts(records) == {"metrics:query": 1, "pr:read": 1, "comment:post": 1}


def test_user_revoked_mid_run_stops_the_next_hop(distributed: Distributed) -> None:
    d = distributed
    run_id = start_and_pause_after_infrabot(d)

    with d.auth_client(ORCHESTRATOR_CLIENT) as orchestrator:
        answer = orchestrator.revoke_by(user=SAM)
    assert answer == {"revoked": "user", "user": SAM, "version": 1}

    assert_argocd_refused(d, run_id, "user_revoked")


def test_revoking_the_root_token_cascades_to_the_next_hop(distributed: Distributed) -> None:
    d = distributed
    run_id = start_and_pause_after_infrabot(d)
    with d.audit() as audit:
        (root,) = audit.query(run_id=run_id, action="root_grant")
    assert root.decision == "allow" and root.jti

    with d.auth_client(ORCHESTRATOR_CLIENT) as orchestrator:
        answer = orchestrator.revoke_by(jti=root.jti)
    assert answer == {"revoked": "jti", "jti": root.jti}

    # ArgoCD holds a token exchanged (by InfraBot) from the root: revoked with it.
    assert_argocd_refused(d, run_id, "ancestor_revoked")
