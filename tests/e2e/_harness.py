"""The product running for real, for the end-to-end and reliability tests.

* Embedded: :func:`embedded_settings` for :func:`infrabot.system.running_system` (every port
  chosen by the OS, the in-memory broker, the in-process worker).
* Distributed: :class:`e2e._processes.Distributed` (real ``infrabot serve`` and ``infrabot
  worker`` processes over a real Redis).

Plus what both modes share: signed webhook deliveries over HTTP, the chain every call of the
``post-deploy`` story must show in the audit trail, and ``infrabot runs show`` as a subprocess.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import context as otel_context
from pydantic import SecretStr

from infrabot.system import System
from orchestrator.audit import StoredRecord
from orchestrator.ci import build_deployment_event, build_workflow_run_event
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.runs import EventDetail, Finished, Run

REPO = Path(__file__).resolve().parents[2]
INFRABOT = Path(sys.executable).with_name("infrabot")
SECRET = "e2e-webhook-secret"
SAM = "user:sam"
COMMIT = "9f2c1e7"
PR = 124
RUN_TIMEOUT = 30.0
QUEUES = ("infrabot", "argocd", "scanner", "rollback", "cleanup")

INFRABOT_CHAIN = ("agent:infrabot", SAM)
ARGOCD_CHAIN = ("agent:argocd", "agent:infrabot", SAM)
SCANNER_CHAIN = ("agent:scanner", "agent:infrabot", SAM)
CLEANUP_CHAIN = ("agent:cleanup", "agent:infrabot", SAM)  # a join continues the fork point's
# The post-deploy story, every service call of it: (audit action, agent) -> (service, chain).
POST_DEPLOY_CALLS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("metrics:query", "agent:infrabot"): ("datadog", INFRABOT_CHAIN),
    ("pr:read", "agent:infrabot"): ("github", INFRABOT_CHAIN),
    ("comment:post", "agent:infrabot"): ("github", INFRABOT_CHAIN),
    ("deploy:create", "agent:argocd"): ("github", ARGOCD_CHAIN),
    ("tags:create", "agent:argocd"): ("aws", ARGOCD_CHAIN),
    ("pr:read", "agent:scanner"): ("github", SCANNER_CHAIN),
    ("instances:describe", "agent:scanner"): ("aws", SCANNER_CHAIN),
    ("tags:delete", "agent:cleanup"): ("aws", CLEANUP_CHAIN),
    ("incident:resolve", "agent:cleanup"): ("pagerduty", CLEANUP_CHAIN),
}
# InfraBot's fan-out: both branches' hand-offs, then the join's (minted by the fork point)
POST_DEPLOY_HAND_OFFS = ["agent:argocd", "agent:scanner", "agent:cleanup"]
POST_DEPLOY_MUTATIONS = ("comment:post", "deploy:create", "tags:create", "tags:delete",
                         "incident:resolve")


# -- deliveries ---------------------------------------------------------------------------------

def deployment(user: str = "sam", *, environment: str = "prod", trigger: str = "ci_pipeline",
               secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    """A signed ``deployment`` delivery: ``user`` deploys service-x at COMMIT (PR 124)."""
    return build_deployment_event(user, "service-x", environment, COMMIT, trigger=trigger,
                                  pr=PR, secret=secret.encode())


def manual_workflow_run(user: str = "sam", *, environment: str = "prod",
                        secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    """A signed ``workflow_run`` delivery started by hand (``workflow_dispatch``)."""
    return build_workflow_run_event(user, "service-x", environment, COMMIT, trigger="manual",
                                    pr=PR, secret=secret.encode())


def post_webhook(webhooks_url: str, delivery: tuple[Mapping[str, str], bytes]) -> httpx.Response:
    """Send ``delivery`` as a CI system would: from a trace context of its own (empty), never
    under a span an earlier test left current in this thread."""
    headers, body = delivery
    token = otel_context.attach(otel_context.Context())
    try:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            return http.post(f"{webhooks_url}/webhooks/github", headers=dict(headers),
                             content=body)
    finally:
        otel_context.detach(token)


def accepted_run_id(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted", body
    return str(body["run_id"])


def run_of(system: System, user: str = "sam") -> Run:
    """A post-deploy run of ``user``'s deployment, once it ended."""
    run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment(user)))
    return system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)


def regressed_run(system: System) -> Run:
    """A post-deploy run while Datadog reports a p99 latency of 900 ms: the rollback way."""
    datadog = system.service_state("datadog")
    datadog.set_metric("trace.http.request.duration", "*", 900.0)
    try:
        return run_of(system)
    finally:
        datadog.pinned.clear()


# -- embedded -----------------------------------------------------------------------------------

def embedded_settings(state_dir: Path, **overrides: Any) -> Settings:
    """One process, every port chosen by the OS, the in-memory broker and registry."""
    values: dict[str, Any] = {
        "state_dir": state_dir, "auth_port": 0, "datadog_port": 0, "github_port": 0,
        "aws_port": 0, "pagerduty_port": 0, "webhooks_port": 0, "broker_url": "memory://",
        "redis_url": None, "webhook_secret": SecretStr(SECRET), "log_level": "WARNING",
    }
    return Settings(**{**values, **overrides})


# -- reading what a run left behind -------------------------------------------------------------

def service_records(records: Iterable[StoredRecord]) -> list[StoredRecord]:
    return [r for r in records if r.service in SERVICE_NAMES]


def first_time_counts(records: Iterable[StoredRecord]) -> collections.Counter[str]:
    """Allowed service calls that acted (``ok``), by audit action; replays are not counted."""
    return collections.Counter(r.action for r in service_records(records)
                               if r.decision == "allow" and r.reason == "ok")


ONE_PASS_EXCHANGES = {"agent:infrabot": 6, "agent:argocd": 2, "agent:scanner": 2,
                      "agent:cleanup": 2}


def assert_post_deploy_audit(records: list[StoredRecord], run_id: str,
                             exchanges_by_agent: Mapping[str, int] = ONE_PASS_EXCHANGES, *,
                             environment: str = "prod") -> None:
    """Every call of the story once, by the right agent, for sam, with the full nested chain;
    ``exchanges_by_agent``: how many tokens each agent obtained (a retried hop asks again)."""
    calls = service_records(records)
    assert [r for r in calls if r.decision != "allow"] == []
    assert collections.Counter((r.action, r.performed_by) for r in calls
                               if r.reason == "ok") == dict.fromkeys(POST_DEPLOY_CALLS, 1)
    for record in calls:
        service, chain = POST_DEPLOY_CALLS[(record.action, record.performed_by or "")]
        assert (record.service, record.performed_by, record.on_behalf_of, record.chain) == \
            (service, chain[0], SAM, chain), record
        assert record.run_id == run_id
        assert record.context["environment"] == environment
        assert record.context["trigger"] == "ci_pipeline"
        assert record.request_id is not None and record.request_id.startswith(run_id)
    root = [r for r in records if r.action == "root_grant"]
    assert len(root) == 1 and root[0].decision == "allow"
    assert (root[0].performed_by, root[0].on_behalf_of, root[0].chain) == \
        ("client:orchestrator", SAM, (SAM,))
    assert "urn:infra:secrets:manage" not in root[0].scopes  # held by sam, needed by no step
    exchanges = [r for r in records if r.action == "token_exchange"]
    assert exchanges and all(r.decision == "allow" and r.on_behalf_of == SAM for r in exchanges)
    # one pass: 9 service tokens + 3 hand-off tokens (2 branches, the join)
    assert collections.Counter(r.performed_by for r in exchanges) == exchanges_by_agent


def assert_post_deploy_hops(run: Run) -> None:
    """InfraBot, then its two branches in parallel (in either order), then the join, after
    both: each agent's first event in that order."""
    firsts: list[str] = []
    for event in run.events:
        if (event.agent or "orchestrator") not in firsts:
            firsts.append(event.agent or "orchestrator")
    assert firsts[:2] == ["orchestrator", "agent:infrabot"], firsts
    assert sorted(firsts[2:4]) == ["agent:argocd", "agent:scanner"], firsts
    assert firsts[4:] == ["agent:cleanup"], firsts
    join = next(i for i, e in enumerate(run.events) if e.agent == "agent:cleanup")
    assert all(e.agent not in ("agent:argocd", "agent:scanner") for e in run.events[join:])


def events_of(run: Run, kind: str, agent: str | None = None) -> list[EventDetail]:
    """The details of the run's ``kind`` events (``agent``'s only, if given), in order."""
    return [e.detail for e in run.events if e.kind == kind and (agent is None or e.agent == agent)]


def assert_denied(run: Run, reason: str) -> None:
    assert (run.status, run.reason) == ("denied", reason), (run.status, run.reason)
    finished = events_of(run, "finished")
    assert finished == [Finished(status="denied", reason=reason)]
    assert events_of(run, "retrying") == []  # a denial is permanent: never retried


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any INFRABOT_* or proxy setting, plus ``extra``."""
    dropped = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INFRABOT_") and k.lower() not in dropped}
    env.update(extra)
    return env


def runs_show(state_dir: Path, run_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``infrabot runs show RUN`` in its own process, reading the run log in ``state_dir``."""
    return subprocess.run(
        [str(INFRABOT), "runs", "show", run_id, "--state-dir", str(state_dir), *args],
        env=clean_env(), capture_output=True, text=True, timeout=60, check=False)


def assert_runs_show_hop_by_hop(state_dir: Path, run: Run) -> None:
    """The CLI renders the run, every event in the order it was recorded, and the way taken."""
    shown = runs_show(state_dir, run.run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(run.run_id in line for line in lines[:3]), shown.stdout
    assert any(line.startswith("status") and "succeeded" in line for line in lines), shown.stdout
    # Table rows: "│ +ms │ agent │ event │ detail │"; a wrapped detail continues on rows whose
    # agent cell is empty.
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines
             if line.startswith("│") and line.count("│") >= 5]
    rows = [(agent, event) for _, agent, event, *_ in cells if agent]
    assert rows == [(e.agent or "orchestrator", e.kind) for e in run.events], shown.stdout
    assert rows[-1] == ("agent:cleanup", "finished")
    assert any(line.startswith("branch") and "fan-out to agent:argocd ∥ agent:scanner, joined "
               "by agent:cleanup" in line for line in lines), shown.stdout
