"""Overlapped hops (``overlap_hops`` on) against the real servers, with the default settings
otherwise (DPoP binding and delegation records on): a token asked for while the call before is in flight verifies at its
service or the next agent like any other, and one a hop that stopped early never used is
revoked at the authorization server (RFC 7009), which audits it (docs/journal.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e._harness import embedded_settings, events_of, regressed_run, run_of

from hops.test_hop_resume import INFRABOT, hop, started
from infrabot.system import System, running_system
from orchestrator.catalog import CATALOG
from orchestrator.errors import Unavailable
from orchestrator.runs import Exchanged, Run

ROLLBACK = "agent:rollback"


# A token asked for ahead counts as that (``ahead``) only if the pool thread asking for it has
# started before the call in flight returns (agents/_hop.py: one not started yet is cancelled
# and asked for again). The services whose calls are in flight while a token is asked for ahead
# (Datadog, GitHub, AWS) answer this slowly, as real ones do, so that thread has always started.
IN_FLIGHT_MS = "datadog=200,github=200,aws=200"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[System]:
    """With its worker (its in-memory broker is the process's: one system at a time)."""
    with running_system(embedded_settings(tmp_path / "s", overlap_hops=True,
                                          service_latency_ms=IN_FLIGHT_MS)) as s:
        yield s


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[System]:
    """No worker: the test performs the hop itself."""
    with running_system(embedded_settings(tmp_path / "s", overlap_hops=True),
                        embedded_worker=False) as s:
        yield s


def exchanged(run: Run, agent: str) -> list[Exchanged]:
    return [d for d in events_of(run, "exchanged", agent) if isinstance(d, Exchanged)]


def test_a_hand_off_asked_for_ahead_is_bound_confirmed_and_taken_by_the_next_agent(
        running: System) -> None:
    """The rollback way: InfraBot's comment is skipped (known before its turn), so the plain
    hand-off is asked for while the PR read is in flight."""
    assert running.settings.overlap_hops and running.settings.dpop_binding
    assert running.settings.delegation_records
    run = regressed_run(running)
    assert (run.status, run.reason) == ("succeeded", "ok")
    ours = exchanged(run, INFRABOT)
    assert [(d.for_, d.ahead) for d in ours] == [
        ("datadog.metrics.query", False), ("github.pull.read", True),
        (f"hand-off to {ROLLBACK}", True)]
    claims = ours[-1].claims or {}
    assert claims["cnf"]["jkt"]  # bound to the rollback agent's key
    assert [(r["delegator_id"], r["delegatee_id"]) for r in claims["delegation_chain"]] == \
        [(INFRABOT, ROLLBACK)]  # confirmed by InfraBot's signed record
    theirs = exchanged(run, ROLLBACK)
    assert [(d.for_, d.ahead) for d in theirs] == [
        ("github.deployment_status.create", False), ("aws.ec2.create_tags", True)]
    assert all((d.claims or {}).get("cnf") for d in theirs)
    assert [c.status for c in events_of(run, "called", ROLLBACK)] == [201, 200]  # type: ignore[union-attr]


def test_the_fan_out_run_succeeds_with_its_steps_asked_for_ahead(running: System) -> None:
    run = run_of(running)
    assert (run.status, run.reason) == ("succeeded", "ok")
    ahead = {(e.agent, e.detail.for_) for e in run.events  # type: ignore[union-attr]
             if e.kind == "exchanged" and e.detail.ahead}  # type: ignore[union-attr]
    assert ahead == {(INFRABOT, "github.pull.read"), (INFRABOT, "github.comment.create"),
                     ("agent:argocd", "aws.ec2.create_tags"),
                     ("agent:scanner", "aws.ec2.describe_instances"),
                     ("agent:cleanup", "pagerduty.incident.resolve")}


def test_a_token_asked_for_ahead_of_a_step_that_never_ran_is_revoked_and_audited(
        idle: System, monkeypatch: pytest.MonkeyPatch) -> None:
    args = started(idle)
    run_id = args[0]
    github = idle.runtime.service_url("github")
    send = idle.runtime.http.request

    def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        if url.startswith(github):
            time.sleep(0.3)  # the comment's token is asked for meanwhile
            raise httpx.ConnectError("github down")
        return send(method, url, **kwargs)

    monkeypatch.setattr(idle.runtime.http, "request", request)
    with pytest.raises(Unavailable):
        hop(idle, INFRABOT, args)
    records = idle.stack.audit.query(run_id=run_id)
    minted = [r for r in records if r.action == "token_exchange"
              and r.scopes == (CATALOG["github.comment.create"].scope,)]
    assert len(minted) == 1 and minted[0].jti
    revokes = [r for r in idle.stack.audit.query() if r.action == "revoke"]
    assert [(r.performed_by, r.reason, r.resource) for r in revokes] == \
        [(INFRABOT, "token_revoked", f"jti:{minted[0].jti}")]
    run = idle.runtime.runs.get(run_id)
    assert run is not None
    assert [d.for_ for d in exchanged(run, INFRABOT)] == ["datadog.metrics.query",
                                                           "github.pull.read"]

    monkeypatch.setattr(idle.runtime.http, "request", send)  # github is back: the retry
    assert hop(idle, INFRABOT, args).status == "forked"
