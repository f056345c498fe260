"""Fixtures for the demo report tests: one real demo run (attack round, no baseline), shared by
the module's tests, and a builder for small hand-made results (escaping, denials, the guard)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infrabot.demo import DemoResult, run_demo
from orchestrator.audit import StoredRecord
from orchestrator.config import Settings
from orchestrator.runs import Run, RunEvent, RunStatus
from orchestrator.workflows import Workflow, load_directory, load_workflows
from tests._events import detail

T0 = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)
RUN_ID = "run-hand-made"
SHIPPED = Settings().workflows_dir  # the shipped workflows, which the hand-made runs ran


def shipped_workflow(name: str) -> Workflow:
    return load_workflows(SHIPPED, load_directory(SHIPPED / "directory.yaml"))[name]


@pytest.fixture(scope="session")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """sam's deploy run for real on the embedded system, then the attack round."""
    state = tmp_path_factory.mktemp("demo-state")
    result = run_demo(Settings(state_dir=state), attacks=True, static=False)
    assert result.run.status == "succeeded", result.run.reason
    return result


@pytest.fixture(scope="session")
def report_file(demo_result: DemoResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infrabot.demo._report import write_report

    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(demo_result, path)
    return path


def event(seq: int, kind: str, agent: str | None = None, **fields: Any) -> RunEvent:
    """A ``kind`` event: its detail is the kind's plausible defaults with ``fields``."""
    return RunEvent(run_id=RUN_ID, seq=seq, time=T0 + timedelta(milliseconds=10 * seq),
                    kind=kind, agent=agent, detail=detail(kind, **fields))


def record(n: int, **fields: Any) -> StoredRecord:
    values: dict[str, Any] = {
        "time": T0 + timedelta(milliseconds=10 * n), "service": "github", "action": "pr:read",
        "resource": "github:acme/service-x#124", "decision": "allow", "reason": "ok",
        "performed_by": "agent:infrabot", "on_behalf_of": "user:sam",
        "chain": ("agent:infrabot", "user:sam"), "run_id": RUN_ID, "status": 200,
        "id": n, "writer": "test", "seq": n, "prev_hash": "0" * 64, "hash": f"{n:064x}"}
    return StoredRecord(**{**values, **fields})


def make_result(events: list[RunEvent], *, status: RunStatus = "succeeded",
                audit: list[StoredRecord] | None = None, **changes: Any) -> DemoResult:
    commit = changes.pop("commit", "9f2c1e7")
    run = Run(run_id=RUN_ID, workflow="post-deploy", user="user:sam", status=status,
              reason="ok" if status == "succeeded" else "denied", trigger="ci_pipeline",
              environment="prod", repository="acme/service-x", commit=commit,
              service="service-x", pr=124, created_at=T0,
              finished_at=T0 + timedelta(milliseconds=10 * (len(events) + 1)),
              events=tuple(events))
    event_fields = {"user_login": "sam", "service": "service-x", "environment": "prod",
                    "commit": commit, "pr": 124}
    changes.setdefault("workflow", shipped_workflow("post-deploy"))
    return DemoResult(event=event_fields, run=run, audit=audit or [record(1)],
                      user_permissions=["urn:infra:repo:read", "urn:infra:deploy:comment"],
                      **changes)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[DemoResult], str]:
    """Write a result's report to a fresh file and return the document text."""
    from infrabot.demo._report import write_report

    def _write(result: DemoResult) -> str:
        path = tmp_path / "report.html"
        write_report(result, path)
        return path.read_text(encoding="utf-8")

    return _write
