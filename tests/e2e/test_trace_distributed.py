"""One trace across processes: ``infrabot serve`` and an ``infrabot worker`` (prefork) over
Redis, each keeping its spans in the shared run log. The run's spans come from both processes
and link up: the serve's webhook request and run, the Celery publish, the worker's hop, its
calls, and the serve's exchange and enforcement under them."""

from __future__ import annotations

import time

import pytest

from e2e._harness import accepted_run_id, deployment
from e2e._processes import Distributed
from orchestrator.audit import contains_raw_jwt
from orchestrator.runs import SpanLog, SpanRecord

pytestmark = pytest.mark.redis
FLUSH_SECONDS = 20.0  # how long the exporters may take to write what they finished
AGENTS = {"agent:infrabot", "agent:argocd", "agent:scanner", "agent:cleanup"}


def ancestors(span: SpanRecord, by_id: dict[str, SpanRecord]) -> list[SpanRecord]:
    out, parent = [], span.parent_id
    while parent is not None and parent in by_id:
        out.append(by_id[parent])
        parent = by_id[parent].parent_id
    return out


def hops_of(spans: list[SpanRecord]) -> dict[object, SpanRecord]:
    """The worker's hop spans, by agent."""
    return {s.attributes.get("infrabot.agent"): s for s in spans
            if s.name.startswith("run/agents.") and s.service == "infrabot-worker"}


def linked_up(spans: list[SpanRecord]) -> bool:
    """Whether the run log holds every span the test follows and each ancestor it follows it up
    to. A parent ends after its children (the serve's server span of a call only once its
    answer is sent, after the enforcement under it), so it may come in a later batch."""
    by_id = {s.span_id: s for s in spans}

    def above(span: SpanRecord) -> set[tuple[str, str]]:
        return {(a.service, a.name) for a in ancestors(span, by_id)}

    hops = hops_of(spans)
    enforcements = [s for s in spans if s.name == "enforce pagerduty"]
    return set(hops) == AGENTS and bool(enforcements) \
        and all(above(hop) >= {("infrabot", "run post-deploy"),
                               ("infrabot", "POST /webhooks/github")} for hop in hops.values()) \
        and above(enforcements[0]) >= {("infrabot-worker", "run/agents.cleanup"),
                                       ("infrabot", "run post-deploy")}


def test_a_distributed_run_is_one_trace_across_processes(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    d.worker(concurrency=1)
    run_id = accepted_run_id(d.webhook(deployment("sam", environment="staging")))
    run = d.wait_run(run_id)
    assert run.status == "succeeded" and run.trace_id, d.logs()
    deadline = time.monotonic() + FLUSH_SECONDS
    while True:  # the exporters write in batches: wait (bounded) until the chains are whole
        with d.runs() as store:
            spans = SpanLog(store).of_trace(run.trace_id)
        if linked_up(spans) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} == {"infrabot", "infrabot-worker"}
    hops = hops_of(spans)
    assert set(hops) == AGENTS
    for hop in hops.values():  # the worker's hop under the serve's publish
        names = [(a.service, a.name) for a in ancestors(hop, by_id)]
        assert ("infrabot", "run post-deploy") in names, names
        assert ("infrabot", "POST /webhooks/github") in names, names
    enforcements = [s for s in spans if s.name == "enforce pagerduty"]
    assert enforcements
    chain = [(a.service, a.name) for a in ancestors(enforcements[0], by_id)]
    assert ("infrabot-worker", "run/agents.cleanup") in chain, chain
    assert ("infrabot", "run post-deploy") in chain, chain
    for span in spans:
        assert not any(contains_raw_jwt(str(v)) for v in span.attributes.values()), span.name
    d.assert_logs_hold_no_token()
