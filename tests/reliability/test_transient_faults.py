"""A service that answers 503 twice, then 200: the hop retries with backoff (never on a denial),
the run succeeds, the run log shows the retries, and the service acted exactly once.

The agents reach AWS through a real forward proxy on loopback that answers the first two
``POST /ec2/CreateTags`` itself with 503 (AWS never sees them). The route goes through the HTTP
client, not through the endpoints: an endpoint is also the ``resource`` an agent asks a token
for, and the authorization server knows AWS by its own URL, not the proxy's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from e2e._harness import (
    ONE_PASS_EXCHANGES,
    RUN_TIMEOUT,
    SAM,
    accepted_run_id,
    assert_post_deploy_audit,
    deployment,
    embedded_settings,
    events_of,
    first_time_counts,
    post_webhook,
)
from e2e._processes import Distributed

from agents.tasks import MAX_RETRIES
from infrabot.system import System, running_system
from orchestrator.audit import StoredRecord
from orchestrator.runs import Finished, Run
from reliability._faultproxy import FaultProxy

CREATE_TAGS = "/ec2/CreateTags"
ATTEMPTS = MAX_RETRIES + 1  # the first try and every retry


@contextmanager
def service_through_proxy(system: System, service: str, proxy_url: str) -> Iterator[None]:
    """Route the embedded agents' calls to ``service`` through the proxy (before any hop)."""
    runtime = system.runtime
    original = runtime.http
    routed = httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False,
                          mounts={system.endpoints()[service]:
                                  httpx.HTTPTransport(proxy=proxy_url)})
    runtime.http = routed
    try:
        yield
    finally:
        runtime.http = original
        routed.close()


def assert_retried_then_acted_once(run: Run, records: list[StoredRecord],
                                   proxy: FaultProxy) -> None:
    assert (run.status, run.reason) == ("succeeded", "ok")
    retries = events_of(run, "retrying")
    assert [(r.reason, r.attempt) for r in retries] == \
        [("aws_http_503", 1), ("aws_http_503", 2)]
    assert [e.agent for e in run.events if e.kind == "retrying"] == ["agent:argocd"] * 2
    assert [(s.status, s.faked) for s in proxy.answered(CREATE_TAGS)] == \
        [(503, True), (503, True), (200, False)]
    # The retried hop resumed from its journal: its first mutation, recorded done, was not
    # sent again; only the step in doubt was, under its key. ArgoCD (a fan-out branch, which
    # hands off to no one) asked for two service tokens on its first attempt and one on each
    # retry.
    assert_post_deploy_audit(records, run.run_id, {**ONE_PASS_EXCHANGES, "agent:argocd": 4})
    assert [r.action for r in records if r.reason == "idempotent_replay"] == []
    assert [(e.action, e.replayed) for e in events_of(run, "called", "agent:argocd")] == \
        [("deploy:create", False), ("tags:create", False)]
    keys = {s.request_id for s in proxy.answered(CREATE_TAGS)}
    assert keys == {f"{run.run_id}.argocd.1"}  # one key on every attempt
    assert events_of(run, "handed_off", "agent:argocd") == []  # a branch: the join goes on
    assert len(events_of(run, "finished")) == 1


def test_service_503_twice_then_200_embedded(tmp_path: Path) -> None:
    with FaultProxy() as proxy, running_system(embedded_settings(tmp_path / "s")) as system:
        proxy.fail(CREATE_TAGS, times=2)
        with service_through_proxy(system, "aws", proxy.url):
            run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
            run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT + 30)

        assert_retried_then_acted_once(run, system.stack.audit.query(run_id=run_id), proxy)
        aws = system.service_state("aws")
        assert [c for c in aws.changes if c[0] == "CreateTags"] == [
            ("CreateTags", "i-0a1b2c3d4e5f60001", "agent:argocd", SAM),
            ("CreateTags", "i-0a1b2c3d4e5f60002", "agent:argocd", SAM)]
        assert len(system.service_state("github").statuses[("acme", "service-x", 9001)]) == 1


@pytest.mark.redis
def test_service_503_twice_then_200_distributed(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    with FaultProxy() as proxy:
        proxy.fail(CREATE_TAGS, times=2)
        d.worker(concurrency=2, HTTP_PROXY=proxy.url)
        run_id = accepted_run_id(d.webhook(deployment("sam")))
        run = d.wait_run(run_id)
        with d.audit() as audit:
            records = audit.query(run_id=run_id)
            everything = audit.query()
        assert_retried_then_acted_once(run, records, proxy)
        assert first_time_counts(everything)["tags:create"] == 1
    d.assert_logs_hold_no_token()


def test_service_down_for_good_fails_the_run_after_bounded_retries(tmp_path: Path) -> None:
    """Retries are bounded: a service that never recovers ends the run ``failed`` (never
    stranded ``running``), with the reason, and nothing after the failing call happened."""
    with FaultProxy() as proxy, running_system(embedded_settings(tmp_path / "s")) as system:
        proxy.fail(CREATE_TAGS, times=1000)
        with service_through_proxy(system, "aws", proxy.url):
            run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
            run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT + 30)

        assert (run.status, run.reason) == \
            ("failed", f"agent:argocd: aws_http_503 after {ATTEMPTS} attempts")
        assert events_of(run, "finished") == [Finished(status="failed", reason=run.reason)]
        assert [r.attempt for r in events_of(run, "retrying")] == list(range(1, ATTEMPTS))
        assert [s.status for s in proxy.answered(CREATE_TAGS)] == [503] * ATTEMPTS
        assert events_of(run, "handed_off", "agent:argocd") == []
        records = system.stack.audit.query(run_id=run_id)
        # the scanner's branch made its two reads beside; ArgoCD's stopped at the failing
        # call, and the join (CleanupAgent) only ended the run with that outcome
        assert first_time_counts(records) == {"metrics:query": 1, "pr:read": 2,
                                              "comment:post": 1, "instances:describe": 1,
                                              "deploy:create": 1}
        assert [e.agent for e in run.events if e.kind == "branch_ended"] == ["agent:argocd"]
        assert [e.kind for e in run.events if e.agent == "agent:cleanup"] == ["finished"]
        assert system.service_state("aws").changes == []
        assert system.service_state("pagerduty").history == []
