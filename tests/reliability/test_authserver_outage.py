"""The authorization server unreachable for a few seconds while runs are in flight, distributed.

The workers reach it (and the services) through a forward proxy on loopback. For a window of
``OUTAGE`` seconds every ``POST /token`` is answered 503 by the proxy or has its connection
closed without an answer; the authorization server never sees those requests. Then it is back.
(The orchestrator, in the serve process, roots runs directly, so deliveries keep being accepted.)

What must hold: each exchange the outage refused cost its hop exactly one retry (or its final
failure); every run ends, ``succeeded`` or ``failed`` after bounded retries with the outage's
reason; no token was issued that the run log does not show; nothing happened twice; the audit
trail matches the calls and verifies (``_checks``). Runs started after the window succeed.
"""

from __future__ import annotations

import collections
import time

import pytest
from e2e._harness import accepted_run_id, deployment, events_of

from agents.tasks import MAX_RETRIES
from reliability._checks import assert_after_fault, wait_all_terminal
from reliability._faults import ScriptedProxy
from reliability._system import FaultyDistributed

pytestmark = pytest.mark.redis
OUTAGE = 2.0
OUTAGE_REASONS = {"injected_fault", "authserver_unavailable"}  # a 503 answer, a dropped call


def test_authserver_outage_mid_run(faulty: FaultyDistributed, reliability_redis_url: str,
                                   large: bool) -> None:
    d = faulty
    d.redis_url = reliability_redis_url
    d.serve()
    before_count = 20 if large else 6
    with ScriptedProxy() as wire:
        d.worker(concurrency=2, HTTP_PROXY=wire.url)
        before = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(before_count)]
        outage = wire.outage(["/token"], OUTAGE, pattern="5X")
        during = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(2)]
        time.sleep(max(0.0, outage.end - time.monotonic()) + 0.1)
        after = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(2)]
        runs = wait_all_terminal(d, [*before, *during, *after], timeout=60 + 5 * before_count)
        assert_after_fault(d, runs, wire)
        refused = [s for s in wire.seen if s.faked]

    outcomes = collections.Counter((r.status, r.reason) for r in runs.values())
    print(f"\nauthserver outage ({OUTAGE} s, {len(refused)} exchanges refused): "
          f"{dict(outcomes)}")
    assert refused and {s.status for s in refused} == {503, 0}, refused
    assert all(s.url.endswith("/token") for s in refused)
    gave_up = 0
    for run in runs.values():
        retries = events_of(run, "retrying")
        assert {e.reason for e in retries} <= OUTAGE_REASONS, retries
        if run.status == "failed":
            agent, _, why = (run.reason or "").partition(": ")
            assert agent in ("agent:infrabot", "agent:argocd", "agent:cleanup"), run.reason
            assert why in {f"{r} after {MAX_RETRIES + 1} attempts" for r in OUTAGE_REASONS}, run.reason
            gave_up += 1
        else:
            assert (run.status, run.reason) == ("succeeded", "ok"), run
    # every refused exchange was met by exactly one hop attempt: a retry, or a final failure
    assert sum(len(events_of(r, "retrying")) for r in runs.values()) + gave_up == len(refused)
    assert [runs[r].status for r in after] == ["succeeded"] * len(after)
    d.assert_logs_hold_no_token()
