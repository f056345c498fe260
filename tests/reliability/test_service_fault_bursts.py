"""Services answering 5xx, dropping connections and timing out in bursts, distributed.

The workers reach every service through a forward proxy on loopback that, on the paths the
post-deploy story calls, answers 503 or 502 itself, closes the connection without an answer, or
forwards the call (the service acts) and holds the answer past the agents' 5 s read timeout,
in a repeating pattern shared by every run. What must hold:

* every run ends: ``succeeded``, or ``failed`` after its bounded retries (never stranded);
* every fault a run met cost it exactly one retry (or its final failure), and nothing else did;
* a call that timed out after acting is replayed on the retry (same ``Idempotency-Key``), never
  performed twice;
* the audit trail has exactly one record per request that reached a service, and ``infrabot
  audit verify`` passes (``_checks``).
"""

from __future__ import annotations

import collections

import pytest
from e2e._harness import accepted_run_id, deployment, events_of

from agents.tasks import MAX_RETRIES
from orchestrator.runs import Run
from reliability._checks import assert_after_fault, wait_all_terminal
from reliability._faultproxy import Seen
from reliability._faults import ScriptedProxy
from reliability._system import FaultyDistributed

pytestmark = pytest.mark.redis

# path -> pattern (see _faults): bursts of faults between runs of good answers
# (each pattern fits in the six runs of the default size)
BURSTS = {
    "/api/v1/query": "5X....",
    "/repos/acme/service-x/issues/124/comments": "T.2...",
    "/ec2/CreateTags": "52....",
    "/incidents/P7X9K2Q": ".X5.T.",
}


def faults_met(seen: list[Seen], run_id: str) -> int:
    return sum(1 for s in seen if (s.faked or s.stalled) and s.request_id
               and s.request_id.startswith(f"{run_id}."))


def retries_of(run: Run) -> int:
    """Transient faults the run's hops met: retries, plus the one that ended it."""
    gave_up = run.status == "failed" and (run.reason or "").endswith("attempts")
    return len(events_of(run, "retrying")) + int(gave_up)


def test_service_fault_bursts_end_every_run_once(faulty: FaultyDistributed,
                                                 reliability_redis_url: str,
                                                 large: bool) -> None:
    d = faulty
    d.redis_url = reliability_redis_url
    d.serve()
    count = 24 if large else 6
    with ScriptedProxy() as wire:
        scripts = {path: wire.burst([path], pattern) for path, pattern in BURSTS.items()}
        d.worker(concurrency=2, HTTP_PROXY=wire.url)
        run_ids = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(count)]
        runs = wait_all_terminal(d, run_ids, timeout=90 + 10 * count)
        assert_after_fault(d, runs, wire)
        seen = list(wire.seen)

    outcomes = collections.Counter((r.status, r.reason) for r in runs.values())
    print(f"\nfault bursts: {dict(outcomes)}; applied "
          f"{ {p: ''.join(s.applied) for p, s in scripts.items()} }")
    for run in runs.values():
        assert run.status == "succeeded" or (
            run.status == "failed" and run.reason.endswith(f"after {MAX_RETRIES + 1} attempts")), run.reason
        assert retries_of(run) == faults_met(seen, run.run_id), \
            (run.run_id, events_of(run, "retrying"))
        reasons = {e.reason for e in events_of(run, "retrying")}
        assert reasons <= {"datadog_http_503", "datadog_unreachable", "github_unreachable",
                           "github_http_502", "aws_http_503", "aws_http_502",
                           "pagerduty_unreachable", "pagerduty_http_503"}, reasons
    for path, script in scripts.items():  # every kind of fault was met
        assert set(script.applied) == set(BURSTS[path]), (path, script.applied)
    with d.audit() as audit:
        records = audit.query()
    by_key = collections.defaultdict(list)
    for record in records:
        by_key[record.request_id].append(record.reason)
    for stalled in (s for s in seen if s.stalled):
        run = runs[stalled.request_id.rsplit(".", 2)[0]]
        reasons = by_key[stalled.request_id]
        assert stalled.status < 300 and reasons.count("ok") == 1, (stalled, reasons)
        if run.status == "succeeded":  # retried: the call acted once, then was replayed
            assert set(reasons) == {"ok", "idempotent_replay"}, (stalled, reasons)
    d.assert_logs_hold_no_token()
