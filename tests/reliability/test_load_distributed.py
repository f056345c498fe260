"""Load through the distributed mode: a few hundred CI events (``mixed_events``: several users,
services, environments and triggers, some deliveries broken on purpose) sent by the load
simulator to ``infrabot serve``, two ``infrabot worker`` processes over a real Redis.

None lost, counts exact: every delivery answered (accepted, or refused with the reason its
defect implies), every accepted run terminal, runs by terminal status add up to the deliveries
accepted, and the audit trail holds exactly the calls, exchanges, root grants and deliveries the
run logs show, per action, nothing twice, and verifies. 200 events by default, 600 with
``--reliability-large``.
"""

from __future__ import annotations

import collections
import time

import pytest
from e2e._harness import SECRET, events_of

from orchestrator.ci._load import EventSpec, mixed_events, run_load
from orchestrator.config import SERVICE_NAMES
from reliability._checks import (
    assert_audit_verifies,
    assert_no_effect_twice,
    assert_one_terminal_each,
)
from reliability._system import FaultyDistributed

pytestmark = pytest.mark.redis
REFUSED_FOR = {"unsigned": "missing_signature", "bad_signature": "bad_signature",
               "malformed": "malformed_event"}


def expected_refusals(events: list[EventSpec]) -> collections.Counter[str]:
    """What the receiver must refuse, and why: a replay repeats the previous delivery, which
    was claimed (so ``replayed_delivery``) unless its signature was already refused."""
    out: collections.Counter[str] = collections.Counter()
    previous: str | None = None  # the previous delivery's refusal before its id was claimed
    for index, spec in enumerate(events):
        if spec.bad == "replayed" and index > 0:
            reason = previous or "replayed_delivery"
        elif spec.bad in REFUSED_FOR:
            reason = REFUSED_FOR[spec.bad]
            previous = reason if spec.bad != "malformed" else None
        else:
            reason = "unknown_user" if spec.user == "nobody" else None
            previous = None
        if reason is not None:
            out[reason] += 1
    return out


def test_load_through_two_workers_loses_nothing(faulty: FaultyDistributed,
                                                reliability_redis_url: str,
                                                broker_url: str | None, large: bool) -> None:
    d = faulty
    d.redis_url = reliability_redis_url
    d.broker_url = broker_url  # each broker in turn
    d.serve()
    d.worker()
    d.worker()
    events = mixed_events(600 if large else 200, seed=11)
    started = time.perf_counter()
    report = run_load(d.endpoints["webhooks"], SECRET.encode(), d.state_dir / "runs.sqlite3",
                      events, rate=100.0, timeout=120.0 if not large else 400.0)
    seconds = time.perf_counter() - started
    print(f"\nload: {report.as_dict()} in {seconds:.1f} s")

    assert report.unfinished == 0, d.logs()
    assert report.lost == {}
    assert report.sent == len(events)
    assert report.accepted + sum(report.refused.values()) == report.sent
    assert report.refused == expected_refusals(events)
    assert sum(report.statuses.values()) == report.accepted
    with d.runs() as store:
        runs = {r.run_id: r for r in store.list(limit=1000)}
    assert len(runs) == report.accepted
    assert collections.Counter(r.status for r in runs.values()) == report.statuses
    assert report.statuses["succeeded"] > 0 and report.statuses["denied"] > 0
    assert_one_terminal_each(runs)

    with d.audit() as audit:
        records = audit.query()
    assert_no_effect_twice(runs, records)
    events_of_all = [e for run in runs.values() for e in run.events]
    calls = collections.Counter(
        (e.detail.service, e.detail.action, "allow" if e.kind == "called" else "deny")
        for e in events_of_all if e.kind in ("called", "call_denied"))
    on_record = collections.Counter((r.service, r.action, r.decision) for r in records
                                    if r.service in SERVICE_NAMES)
    assert on_record == calls
    assert [r for r in records if r.reason == "idempotent_replay"] == []
    assert sum(len(events_of(r, "retrying")) for r in runs.values()) == 0

    by_action = collections.Counter((r.action, r.decision) for r in records
                                    if r.service == "authserver")
    kinds = collections.Counter(e.kind for e in events_of_all)
    assert by_action[("token_exchange", "allow")] == kinds["exchanged"]
    assert by_action[("token_exchange", "deny")] == kinds["exchange_denied"]
    assert by_action[("root_grant", "allow")] == kinds["root_granted"]
    assert by_action[("root_grant", "deny")] == kinds["root_denied"]
    webhooks = [r for r in records if r.service == "webhooks"]
    assert len(webhooks) == report.sent
    assert sum(r.decision == "allow" for r in webhooks) == report.accepted
    assert_audit_verifies(d.state_dir)
    d.assert_logs_hold_no_token()
