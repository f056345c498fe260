"""Running scenarios end to end on embedded systems and checking what happened.

Each scenario runs on a system of its own (its own temporary state directory and private
workflows copy, every port chosen by the OS, the in-memory broker, an in-process worker): the mock
services keep state, so a shared system would make one scenario's outcome depend on another's.
For each scenario the event goes to the webhook receiver over HTTP, signed like GitHub signs it;
the run is followed to its terminal status and its event log compared with the expectations.
With ``jobs`` > 1 the groups run in parallel, each in its own process (an embedded worker is
process-wide state, so two never share a process).

A mid-run revocation is made by :mod:`infrabot.scenarios._revoking`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from infrabot.scenarios._checks import Check, check
from infrabot.scenarios._loader import ScenarioFile
from infrabot.scenarios._model import Scenario
from infrabot.scenarios._outcome import Outcome
from infrabot.scenarios._replaying import replaying
from infrabot.scenarios._revoking import revoking
from infrabot.scenarios._sandbox import Sandbox, sandbox_for
from infrabot.system import System, running_system
from orchestrator._log import configure
from orchestrator.ci import (
    DELIVERY_HEADER,
    ROUTE,
    build_deployment_event,
    build_workflow_run_event,
    webhook_key,
)
from orchestrator.client import json_object
from orchestrator.config import Settings
from orchestrator.identity import Directory
from orchestrator.runs import Run, RunStore
from orchestrator.workflows import Workflow

RUN_TIMEOUT = 30.0
_PORTS = ("auth_port", "datadog_port", "github_port", "aws_port", "pagerduty_port",
          "webhooks_port")


@dataclass
class ScenarioResult:
    """One scenario's verdict: every check, or the error that kept it from running."""

    name: str
    path: str
    description: str = ""
    checks: list[Check] = field(default_factory=list)
    run_id: str | None = None
    run: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "description": self.description,
                "passed": self.passed, "error": self.error, "run_id": self.run_id,
                "seconds": round(self.seconds, 3), "notes": self.notes,
                "checks": [c.as_dict() for c in self.checks], "run": self.run}


@dataclass(frozen=True)
class _Group:
    number: int
    sandbox: Sandbox
    members: tuple[ScenarioFile, ...]


def run_scenarios(files: list[ScenarioFile], settings: Settings, directory: Directory,
                  workflows: Mapping[str, Workflow], *, workdir: Path | None = None,
                  jobs: int = 1, timeout: float = RUN_TIMEOUT,
                  progress: Callable[[ScenarioResult], None] = lambda _: None
                  ) -> list[ScenarioResult]:
    """Run every scenario; results come back in the order of ``files``.

    ``workdir`` keeps each group's state (runs, audit) there; by default it is temporary.
    """
    groups = _groups(files, workflows)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            temporary = tempfile.TemporaryDirectory(prefix="infrabot-check-")
            workdir = Path(stack.enter_context(temporary))
        args = [(g, settings, directory, workflows, workdir, timeout) for g in groups]
        by_name: dict[str, ScenarioResult] = {}
        if jobs > 1 and len(groups) > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(groups)),
                                     mp_context=context) as pool:
                for results in pool.map(_run_group, *zip(*args, strict=True)):
                    _collect(results, by_name, progress)
        else:
            for arg in args:
                _collect(_run_group(*arg), by_name, progress)
    return [by_name[f.name] for f in files]


def _collect(results: list[ScenarioResult], into: dict[str, ScenarioResult],
             progress: Callable[[ScenarioResult], None]) -> None:
    for result in results:
        into[result.name] = result
        progress(result)


def _groups(files: list[ScenarioFile], workflows: Mapping[str, Workflow]) -> list[_Group]:
    """One group, and so one fresh system, per scenario."""
    return [_Group(n, sandbox_for(item.scenario, workflows), (item,))
            for n, item in enumerate(files, 1)]


ANY = "*"  # a pinned metric answers for every scope (mock_services.datadog)


def group_settings(settings: Settings, state_dir: Path, workflows_dir: Path,
                   max_depth: int | None) -> Settings:
    """Embedded, on free loopback ports, with the group's own state and workflows."""
    update: dict[str, Any] = {**dict.fromkeys(_PORTS, 0), "service_ports": {},
                              "broker_url": "memory://",
                              "redis_url": None, "issuer": None, "state_dir": state_dir,
                              "workflows_dir": workflows_dir, "log_level": "WARNING"}
    if max_depth is not None:
        update["max_depth"] = max_depth
    return settings.model_copy(update=update)


def _run_group(group: _Group, settings: Settings, directory: Directory,
               workflows: Mapping[str, Workflow], workdir: Path,
               timeout: float) -> list[ScenarioResult]:

    first = group.members[0].scenario
    base = workdir / f"group-{group.number}"
    started = time.perf_counter()
    try:
        private = group.sandbox.write(first, settings.workflows_dir, directory, workflows,
                                      base / "workflows")
        config = group_settings(settings, base / "state", private, first.changes.max_depth)
        with _quiet(), contextlib.ExitStack() as closing, running_system(config) as system, \
                httpx.Client(timeout=10.0, trust_env=False) as http:
            for metric, value in first.changes.metrics.items():  # a regression on demand
                system.service_state("datadog").set_metric(metric, ANY, value)
            return [_run_one(system, http, item, timeout, closing) for item in group.members]
    except Exception as exc:  # noqa: BLE001 - a system that cannot run fails its scenarios
        message = f"the system could not run: {type(exc).__name__}: {exc}"
        return [ScenarioResult(m.name, str(m.path), m.scenario.description, error=message,
                               seconds=time.perf_counter() - started) for m in group.members]


def _run_one(system: System, http: httpx.Client, item: ScenarioFile, timeout: float,
             closing: contextlib.ExitStack) -> ScenarioResult:
    scenario = item.scenario
    result = ScenarioResult(scenario.name, str(item.path), scenario.description)
    started = time.perf_counter()
    headers, body = _delivery(scenario, webhook_key(system.settings))
    try:
        with revoking(system, scenario, headers[DELIVERY_HEADER], closing) as revoker, \
                replaying(system, scenario) as replayed:
            response = http.post(system.webhooks_url + ROUTE, headers=headers, content=body)
            answer = json_object(response)
            run = None
            if response.status_code == 202 and answer.get("status") == "accepted":
                result.run_id = str(answer["run_id"])
                run = _wait(system.runtime.runs, result.run_id, timeout)
        result.notes += revoker.notes
        if revoker.error is not None:
            result.error = revoker.error
        outcome = Outcome.of(response.status_code, answer, run)
        outcome.replay = (replayed.outcome, replayed.error, replayed.reason)
        result.checks = check(scenario.expect, outcome)
        result.run = run.model_dump(mode="json") if run is not None else None
    except (TimeoutError, httpx.HTTPError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - started
    return result


def _delivery(scenario: Scenario, secret: bytes) -> tuple[dict[str, str], bytes]:
    ev = scenario.event
    if ev.type == "deployment":
        return build_deployment_event(ev.login, ev.service, ev.environment, ev.commit,
                                      trigger=ev.trigger, pr=ev.pr, task=ev.task,
                                      creator=ev.creator, secret=secret)
    return build_workflow_run_event(ev.login, ev.service, ev.environment, ev.commit,
                                    trigger=ev.trigger, pr=ev.pr, secret=secret)


def _wait(runs: RunStore, run_id: str, timeout: float) -> Run:
    """The terminal run (its ``finished`` event is written with the status)."""
    return runs.wait(run_id, timeout)


@contextlib.contextmanager
def _quiet(level: str = "WARNING") -> Iterator[None]:
    """Only warnings and errors from the system, on stderr; the logging set-up is restored."""

    was_configured, previous = structlog.is_configured(), structlog.get_config()
    configure(level)
    try:
        with _quiet_kombu():
            yield
    finally:
        if was_configured:
            structlog.configure(**previous)
        else:
            structlog.reset_defaults()


class _DropNoHostname(logging.Filter):
    """kombu warns that ``memory://`` names no host; that is the embedded broker's nature."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No hostname was supplied" not in record.getMessage()


@contextlib.contextmanager
def _quiet_kombu() -> Iterator[None]:
    logger = logging.getLogger("kombu.connection")
    noise = _DropNoHostname()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)
