"""Real processes restarted at the worst moments of a hop; every effect happens exactly once.

* A worker's pool process killed between a call and its recording (the service acted, its
  answer held by the proxy): the redelivered hop skips the steps its journal shows done and
  repeats the step in doubt under its recorded Idempotency-Key, which the service replays.
* A worker's pool process killed between two steps (the next step's token exchange held): the
  resumed hop does not repeat the step before at all.
* ``infrabot serve`` killed and restarted between a call and its recording (the service acted,
  then the connection died without an answer): the retry reaches the new ``serve``, which
  replays the answer kept in Redis instead of acting again.
* ``infrabot serve`` killed and restarted between an idempotent call and its retry (over HTTP,
  no worker): the retry gets the original status and body, and nothing is done again.

Effects are counted from the audit trail (durable across the restarts) and read back from the
services' own state.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from e2e._harness import (
    COMMIT,
    PR,
    SAM,
    accepted_run_id,
    assert_post_deploy_audit,
    deployment,
    events_of,
    first_time_counts,
)
from e2e._processes import Distributed, owner_of_connection
from e2e.test_chain_distributed import read_back

from infrabot.stack import ORCHESTRATOR_CLIENT
from orchestrator.audit import StoredRecord
from orchestrator.identity import Context
from orchestrator.runs import HopJournal, Run
from reliability._checks import assert_after_fault
from reliability._faultproxy import FaultProxy, Rule
from reliability.test_worker_killed import wait_gone
from tests._ports import free_port_base, serve_port_count

pytestmark = pytest.mark.redis
COMMENTS = f"/repos/acme/service-x/issues/{PR}/comments"
STATUSES = "/repos/acme/service-x/deployments/9001/statuses"
TOKEN = "/token"


def restart_serve(d: Distributed, port_base: int) -> None:
    """SIGKILL ``serve`` (its whole process group), then start it again on the same ports."""
    [serve] = [p for p in d.procs if p.name == "serve" and p.alive()]
    os.killpg(serve.pid, signal.SIGKILL)
    serve.popen.wait(10)
    (d.state_dir / "endpoints.json").unlink()
    assert d.serve(port_base=port_base) == d.endpoints


def comments_on_the_pr(d: Distributed, run_id: str) -> int:
    found = read_back(d, COMMENTS, "urn:infra:repo:read")
    assert isinstance(found, list)
    return sum(1 for c in found if run_id in c["body"])


def kill_the_holder(d: Distributed, held: Rule, workers: list) -> int:
    """SIGKILL the pool process holding the held request's connection; its pid."""
    assert held.stalled.wait(30), d.logs()
    assert held.stalled_client is not None
    pool = [pid for w in workers for pid in w.children()]
    victim = owner_of_connection(held.stalled_client[1], pool)
    assert victim is not None, (held.stalled_client, pool)
    os.kill(victim, signal.SIGKILL)
    wait_gone(victim)
    return victim


def finished_once(d: Distributed, run_id: str) -> tuple[Run, list[StoredRecord]]:
    run = d.wait_run(run_id)
    assert (run.status, run.reason) == ("succeeded", "ok"), d.logs()
    assert len(events_of(run, "finished")) == 1
    assert [x.to for x in events_of(run, "handed_off")] == \
        ["agent:argocd", "agent:scanner", "agent:cleanup"]
    with d.audit() as audit:
        records = audit.query(run_id=run_id)
    return run, records


def calls(run: Run, agent: str) -> list[tuple[str, bool]]:
    return [(e.action, e.replayed) for e in events_of(run, "called", agent)]


def test_worker_killed_between_a_call_and_its_recording(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    with FaultProxy() as proxy:
        held = proxy.stall(COMMENTS)  # GitHub posted the comment; its answer is held
        workers = [d.worker(HTTP_PROXY=proxy.url), d.worker(HTTP_PROXY=proxy.url)]
        run_id = accepted_run_id(d.webhook(deployment("sam")))
        kill_the_holder(d, held, workers)
        held.release()
        run, records = finished_once(d, run_id)
        assert [(s.request_id, s.status) for s in proxy.answered(COMMENTS)] == \
            [(f"{run_id}.infrabot.2", 201), (f"{run_id}.infrabot.2", 201)]

    # InfraBot's hop resumed: its two reads were not repeated, the comment was repeated once
    # under its recorded key and replayed.
    assert calls(run, "agent:infrabot") == [("metrics:query", False), ("pr:read", False),
                                            ("comment:post", True)]
    with d.runs() as store:
        step = HopJournal(store).steps(run_id, "agent:infrabot")[2]
    assert (step.state, step.attempts, step.idempotency_key) == \
        ("done", 2, f"{run_id}.infrabot.2")
    assert_post_deploy_audit(records, run_id, {"agent:infrabot": 7, "agent:argocd": 2,
                                               "agent:scanner": 2, "agent:cleanup": 2})
    assert [r.action for r in records if r.reason == "idempotent_replay"] == ["comment:post"]
    assert comments_on_the_pr(d, run_id) == 1
    d.assert_logs_hold_no_token()


def test_worker_killed_between_two_steps(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    with FaultProxy() as proxy:
        # ArgoCD's first step is recorded done; the exchange for its second is held. Named by
        # its client: the worker may take the scanner's branch before ArgoCD's.
        held = proxy.stall(TOKEN, skip=1, client="agent:argocd")
        workers = [d.worker(HTTP_PROXY=proxy.url)]
        run_id = accepted_run_id(d.webhook(deployment("sam")))
        kill_the_holder(d, held, workers)
        with d.runs() as store:
            done = HopJournal(store).steps(run_id, "agent:argocd")
        assert {n: r.state for n, r in done.items()} == {0: "done"}
        held.release()
        run, records = finished_once(d, run_id)
        assert len(proxy.answered(STATUSES)) == 1  # the step before was never sent again

    assert calls(run, "agent:argocd") == [("deploy:create", False), ("tags:create", False)]
    # ArgoCD's second exchange was issued, then the hop died: it asked again once resumed.
    assert_post_deploy_audit(records, run_id, {"agent:infrabot": 6, "agent:argocd": 3,
                                               "agent:scanner": 2, "agent:cleanup": 2})
    assert [r for r in records if r.reason == "idempotent_replay"] == []
    statuses = read_back(d, STATUSES, "urn:infra:repo:read")
    assert isinstance(statuses, list) and len(statuses) == 1
    d.assert_logs_hold_no_token()


def test_serve_restarted_between_a_call_and_its_recording(distributed: Distributed) -> None:
    d = distributed
    base = free_port_base(serve_port_count(d.workflows_dir))
    d.serve(port_base=base)
    with FaultProxy() as proxy:
        # GitHub posts the comment and keeps its answer; then serve dies before answering.
        held = proxy.stall(COMMENTS, then_drop=True)
        d.worker(HTTP_PROXY=proxy.url)
        run_id = accepted_run_id(d.webhook(deployment("sam")))
        assert held.stalled.wait(30), d.logs()
        restart_serve(d, base)
        held.release()  # the worker sees the connection die without an answer, and retries
        run, records = finished_once(d, run_id)
        assert [(s.request_id, s.status, s.stalled) for s in proxy.answered(COMMENTS)] == \
            [(f"{run_id}.infrabot.2", 201, True), (f"{run_id}.infrabot.2", 201, False)]
        assert_after_fault(d, {run_id: run}, proxy, writer_killed=True)  # the first serve

    assert [r.reason for r in events_of(run, "retrying")] == ["github_unreachable"]
    assert calls(run, "agent:infrabot") == [("metrics:query", False), ("pr:read", False),
                                            ("comment:post", True)]
    assert_post_deploy_audit(records, run_id, {"agent:infrabot": 7, "agent:argocd": 2,
                                               "agent:scanner": 2, "agent:cleanup": 2})
    assert [r.action for r in records if r.reason == "idempotent_replay"] == ["comment:post"]
    # The restarted GitHub holds no comment: the retry replayed the answer, it did not post.
    assert comments_on_the_pr(d, run_id) == 0
    d.assert_logs_hold_no_token()


def test_serve_restarted_between_an_idempotent_call_and_its_retry(
        distributed: Distributed) -> None:
    d = distributed
    base = free_port_base(serve_port_count(d.workflows_dir))
    d.serve(port_base=base)
    ctx = Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                  commit=COMMIT, run_id="run-restart")
    scope = "urn:infra:deploy:comment"
    with d.auth_client(ORCHESTRATOR_CLIENT) as orchestrator, \
            d.auth_client("agent:infrabot") as infrabot:
        root = orchestrator.root_token(SAM, [scope], ctx, "agent:infrabot")
        token = infrabot.exchange(root["access_token"], resource=d.endpoints["github"],
                                  scope=scope)["access_token"]
        holder = infrabot.dpop  # the token is bound to InfraBot's DPoP key: a proof per call
    assert holder is not None
    url = d.endpoints["github"] + COMMENTS
    keys = {"Idempotency-Key": "run-restart.infrabot.2", "X-Request-Id": "run-restart.infrabot.2"}
    body = {"body": "Post-deploy checks: latency nominal."}

    def post() -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=10.0) as http:
            return http.post(url, json=body, headers={**keys,
                                                      **holder.headers("POST", url, token)})

    first = post()
    assert first.status_code == 201, first.text
    restart_serve(d, base)
    retry = post()
    assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert read_back(d, COMMENTS, "urn:infra:repo:read") == []  # not posted again
    # another request under the key is still refused after the restart
    other = httpx.post(url, json={"body": "other"}, trust_env=False,
                       headers={**keys, **holder.headers("POST", url, token)})
    assert (other.status_code, other.json()["reason"]) == (422, "idempotency_key_reused")
    with d.audit() as audit:
        mine = [r for r in audit.query(run_id="run-restart") if r.action == "comment:post"]
    assert [(r.decision, r.reason, r.status) for r in mine] == [
        ("allow", "ok", 201), ("allow", "idempotent_replay", 201),
        ("deny", "idempotency_key_reused", 422)]
    assert first_time_counts(mine)["comment:post"] == 1

