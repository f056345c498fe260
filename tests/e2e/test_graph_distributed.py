"""post-deploy's fan-out distributed: a real ``infrabot serve`` and two ``infrabot worker``
processes, the scanner's queue on one and every other agent's on the other, over each broker
(Redis, RabbitMQ). The workers are given no Redis but a Redis broker: the join goes out when the
run log shows both branches ended, from the process whose branch ended last, with no counter
anywhere else. Both branches run, each in its own process with only its own agent's key, and the
join once, after both."""

from __future__ import annotations

import pytest

from e2e._branch_chain import CLEANUP, COMMENTER, SCANNER, with_commenter
from e2e._harness import accepted_run_id, deployment, events_of
from e2e._processes import Distributed

pytestmark = pytest.mark.redis


def test_a_fan_out_over_two_worker_processes_joins_once(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    main = d.worker(queues=("infrabot", "argocd", "rollback", "cleanup"), registry=False)
    scanner = d.worker(queues=("scanner",), registry=False)

    run_id = accepted_run_id(d.webhook(deployment("sam")))
    run = d.wait_run(run_id)

    assert (run.status, run.reason) == ("succeeded", "ok"), d.logs()
    assert [(t.to, t.join) for t in events_of(run, "branch_taken")] == \
        [(["agent:argocd", "agent:scanner"], "agent:cleanup")]
    assert [c.action for c in events_of(run, "called", "agent:scanner")] == \
        ["pr:read", "instances:describe"]
    assert [c.action for c in events_of(run, "called", "agent:cleanup")] == \
        ["tags:delete", "incident:resolve"]
    # each branch in its own process; the join once, after both
    d.wait_output(scanner, f"agents.scanner[{run_id}.scanner] succeeded")
    joined = d.wait_output(main, f"agents.cleanup[{run_id}.cleanup] succeeded")
    assert "agents.argocd[" in joined and "agents.scanner[" not in joined
    assert joined.count(f"agents.cleanup[{run_id}.cleanup] succeeded") == 1
    cleanup_start = next(i for i, e in enumerate(run.events) if e.agent == "agent:cleanup")
    last_branch = max(i for i, e in enumerate(run.events)
                      if e.agent in ("agent:argocd", "agent:scanner"))
    assert last_branch < cleanup_start
    d.assert_logs_hold_no_token()


def test_a_branch_hands_off_on_across_worker_processes(distributed: Distributed) -> None:
    """The scanner's hop, in its own process, hands off to the commenter's (declared only in this
    test's directory file), which runs in the other process carrying the join's hand-off on; the
    join runs once, after the commenter, published by whichever branch's process ended last."""
    d = distributed
    d.workflows_dir = with_commenter(d.root / "workflows")
    d.serve()
    main = d.worker(queues=("infrabot", "argocd", "commenter", "cleanup"), registry=False)
    scanner = d.worker(queues=("scanner",), registry=False)

    run_id = accepted_run_id(d.webhook(deployment("sam")))
    run = d.wait_run(run_id)

    assert (run.status, run.reason, run.workflow) == ("succeeded", "ok", "scan-notify"), d.logs()
    assert [c.action for c in events_of(run, "called", SCANNER)] == ["pr:read"]
    assert [c.action for c in events_of(run, "called", COMMENTER)] == ["comment:post"]
    assert [c.action for c in events_of(run, "called", CLEANUP)] == ["incident:resolve"]
    [handed] = [h for h in events_of(run, "exchanged", SCANNER) if h.hand_off == COMMENTER]
    assert handed.claims["act"] == {"sub": SCANNER, "act": {"sub": "agent:infrabot"}}
    # the commenter's hop ran in the main process, the scanner's in its own
    d.wait_output(main, f"agents.commenter[{run_id}.commenter] succeeded")
    joined = d.wait_output(main, f"agents.cleanup[{run_id}.cleanup] succeeded")
    d.wait_output(scanner, f"agents.scanner[{run_id}.scanner] succeeded")
    assert joined.count(f"agents.cleanup[{run_id}.cleanup] succeeded") == 1
    commenter_last = max(i for i, e in enumerate(run.events) if e.agent == COMMENTER)
    cleanup_first = min(i for i, e in enumerate(run.events) if e.agent == CLEANUP)
    assert commenter_last < cleanup_first
    d.assert_logs_hold_no_token()
