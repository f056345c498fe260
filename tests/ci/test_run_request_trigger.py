"""``POST /runs`` starts only a workflow that accepts manual runs (``manual`` in its
``trigger.triggers``). A workflow left to CI (``triggers: [ci_pipeline]``, the default) named in
a person's request is refused 422 ``trigger_not_handled``, before any run is created, and the
refusal audited as ``environment_not_handled`` is (``webhooks`` / ``run_request``, deny).

Over real HTTP, with the real orchestrator, the shipped workflows, a real run log and audit
store; the bearer token is taken as sam's from one provider (its verification is tested in
tests/federation)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator._servers import ServerGroup, bind
from orchestrator.audit import AuditStore
from orchestrator.ci import create_webhook_app
from orchestrator.identity import Directory
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import RunStore
from orchestrator.workflows import load_workflows

from .test_run_start_audit import REFUSAL, UserAuth, receiving
from .test_run_start_faults import WORKFLOWS, Broker


@dataclass
class Served:
    url: str
    runs: RunStore
    audit: AuditStore
    broker: Broker

    def request(self, workflow: str, environment: str = "staging") -> httpx.Response:
        return httpx.post(f"{self.url}/runs", headers={"Authorization": "Bearer idp-token"},
                          json={"workflow": workflow, "parameters": {
                              "environment": environment, "repository": "acme/service-x",
                              "commit": "9f2c1e7", "pr": 124}}, timeout=30)


@pytest.fixture
def served(tmp_path: Path, directory: Directory) -> Iterator[Served]:
    with RunStore(tmp_path / "runs.sqlite3") as runs, \
            AuditStore(tmp_path / "audit.sqlite3", writer="webhooks-test") as audit:
        broker = Broker(runs)
        workflows = load_workflows(WORKFLOWS, directory)
        assert workflows["post-deploy"].trigger.triggers == ("ci_pipeline",)
        assert "manual" in workflows["manual-check"].trigger.triggers
        orchestrator = Orchestrator(directory, workflows, runs, auth=UserAuth(),
                                    dispatch=broker)  # type: ignore[arg-type]
        receiver, requests = receiving(directory, audit, runs, orchestrator)
        sock = bind("127.0.0.1", 0)
        group = ServerGroup()
        group.add(create_webhook_app(receiver, requests), sock)
        with group:
            yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", runs, audit, broker)


@pytest.mark.parametrize("workflow", ["post-deploy", "rollback", "scan-report", "announce"])
def test_a_workflow_left_to_ci_is_not_started_by_hand(served: Served, workflow: str) -> None:
    answer = served.request(workflow)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert set(body) == REFUSAL
    assert (body["error"], body["reason"]) == ("unprocessable", "trigger_not_handled")
    assert body["error_description"] == (f"{workflow} is not started by hand: it accepts "
                                         "ci_pipeline runs only")
    assert served.runs.list(10) == [] and served.broker.published == []
    [record] = served.audit.query(service="webhooks")
    assert (record.action, record.decision, record.reason, record.status, record.run_id,
            record.on_behalf_of) == ("run_request", "deny", "trigger_not_handled", 422, None,
                                     "user:sam")


def test_a_workflow_that_accepts_manual_runs_is_started(served: Served) -> None:
    answer = served.request("manual-check")
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    run = served.runs.get(run_id)
    assert run is not None and (run.status, run.trigger) == ("running", "user_request")
    assert served.broker.published == [(run_id, "running")]


def test_an_environment_the_workflow_does_not_run_in_is_refused_first(served: Served) -> None:
    """Both wrong: the environment is named, as before this check."""
    answer = served.request("post-deploy", environment="canary")
    assert (answer.status_code, answer.json()["reason"]) == (422, "environment_not_handled")
