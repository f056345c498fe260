"""A worker's whole process group killed with SIGKILL mid-hop (main process and pool): nothing
tells the broker, so the hop comes back only by the broker's own means.

* RabbitMQ: the dead worker's connection closes with its process, and the unacknowledged hop goes
  back to its queue at once: a second worker finishes the run within seconds.
* Redis: the hop stays in the unacknowledged set until the visibility timeout passes and a
  worker's sweep (every ``RESTORE_INTERVAL`` s) restores it: within the timeout plus 15 s. The
  surviving worker sweeps with the least timeout its hop time limit allows (15 s: 26 s); the
  killed one keeps the default limit, so the stalled hop cannot reach it before the kill.

Either way the run ends once, and the calls the repeated hop makes again are replayed by the
services (same Idempotency-Keys), not performed twice.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from e2e._harness import RUN_TIMEOUT, accepted_run_id, deployment, events_of, first_time_counts
from e2e._processes import Distributed

from orchestrator.config import VISIBILITY_MARGIN
from reliability._faultproxy import FaultProxy

pytestmark = pytest.mark.redis
CREATE_TAGS = "/ec2/CreateTags"
HOP_TIME_LIMIT = 15
VISIBILITY = HOP_TIME_LIMIT + VISIBILITY_MARGIN
BOUND = {"amqp": 10.0, "redis": VISIBILITY + 15.0}


def test_a_killed_worker_group_has_its_hop_redelivered(distributed: Distributed) -> None:
    d = distributed
    kind = d.settings.broker_kind
    env = {"INFRABOT_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
           "INFRABOT_HOP_TIME_LIMIT_SECONDS": str(HOP_TIME_LIMIT)}
    d.serve()
    with FaultProxy() as proxy:
        stall = proxy.stall(CREATE_TAGS)  # ArgoCD's hop tagged the instances, answer held
        doomed = d.worker(HTTP_PROXY=proxy.url)
        run_id = accepted_run_id(d.webhook(deployment("sam")))
        assert stall.stalled.wait(RUN_TIMEOUT), d.logs()
        survivor = d.worker(HTTP_PROXY=proxy.url, **env)  # idle, consuming every queue
        os.killpg(doomed.pid, signal.SIGKILL)  # the main process and its pool, no warning
        killed_at = time.monotonic()
        doomed.popen.wait(10)
        stall.release()
        run = d.wait_run(run_id, timeout=BOUND[kind] + 20)
        recovered = time.monotonic() - killed_at

    print(f"\n{kind}: hop redelivered and run ended {recovered:.1f} s after the kill")
    assert (run.status, run.reason) == ("succeeded", "ok"), d.logs()
    assert recovered <= BOUND[kind], (kind, recovered)
    assert survivor.alive()
    assert len(events_of(run, "finished")) == 1
    with d.audit() as audit:
        assert first_time_counts(audit.query())["tags:create"] == 1
    d.assert_logs_hold_no_token()
