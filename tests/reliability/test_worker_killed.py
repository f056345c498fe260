"""A worker process killed with SIGKILL in the middle of a hop, right after its call changed
something: the message is requeued (late acknowledgement, rejected on worker loss), a fresh
worker process resumes the hop from its journal, the run completes exactly once: the step done
before is not repeated, and the one in doubt is repeated under its recorded Idempotency-Key and
replayed by the service, not performed twice.

The process killed is the prefork pool child executing the hop (found by the TCP connection it
holds to the fault proxy), the loss the worker itself recovers at once: its main process sees
the child die and requeues the message. Killing the main process too is test_worker_lost.py.
Runs on both brokers.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from e2e._harness import (
    RUN_TIMEOUT,
    accepted_run_id,
    assert_post_deploy_audit,
    deployment,
    events_of,
    first_time_counts,
)
from e2e._processes import Distributed, owner_of_connection

from reliability._faultproxy import FaultProxy

pytestmark = pytest.mark.redis
CREATE_TAGS = "/ec2/CreateTags"


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace") \
            if Path(f"/proc/{pid}/stat").exists() else ""
        if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
            return  # dead, waiting for its parent to reap it
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


def test_pool_process_killed_mid_hop_completes_the_run_once(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    with FaultProxy() as proxy:
        # AWS tags the instances, then its answer is held: the hop is mid-call, effect done.
        stall = proxy.stall(CREATE_TAGS)
        workers = [d.worker(HTTP_PROXY=proxy.url), d.worker(HTTP_PROXY=proxy.url)]
        run_id = accepted_run_id(d.webhook(deployment("sam")))

        assert stall.stalled.wait(RUN_TIMEOUT), d.logs()
        assert stall.stalled_client is not None
        pool = [pid for w in workers for pid in w.children()]
        victim = owner_of_connection(stall.stalled_client[1], pool)
        assert victim is not None, (stall.stalled_client, pool)
        os.kill(victim, signal.SIGKILL)
        wait_gone(victim)
        stall.release()

        run = d.wait_run(run_id)
        assert all(w.popen.poll() is None for w in workers), d.logs()
        assert victim not in [pid for w in workers for pid in w.children()]

    assert (run.status, run.reason) == ("succeeded", "ok"), d.logs()
    assert len(events_of(run, "finished")) == 1
    assert events_of(run, "retrying") == []  # a lost worker is not a transient fault
    # ArgoCD's hop ran twice (killed, then redelivered): its recorded step was skipped, the
    # step in doubt repeated under its key and replayed.
    assert [(e.action, e.replayed) for e in events_of(run, "called", "agent:argocd")] == \
        [("deploy:create", False), ("tags:create", True)]
    assert [x.to for x in events_of(run, "handed_off")] == \
        ["agent:argocd", "agent:scanner", "agent:cleanup"]
    assert [(s.status, s.faked) for s in proxy.answered(CREATE_TAGS)] == \
        [(200, False), (200, False)]
    with d.audit() as audit:
        records = audit.query(run_id=run_id)
        everything = audit.query()
    assert_post_deploy_audit(records, run_id, {"agent:infrabot": 6, "agent:argocd": 3,
                                               "agent:scanner": 2, "agent:cleanup": 2})
    assert sorted(r.action for r in records if r.reason == "idempotent_replay") == \
        ["tags:create"]
    assert first_time_counts(everything)["tags:create"] == 1
    d.assert_logs_hold_no_token()
