"""An embedded InfraBot system for a test: every server on a free loopback port, the in-memory
broker and an in-process worker, a temporary state directory, and a webhook secret made for the
test. Events go to the receiver over real HTTP, signed as a CI system signs them."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from infrabot.system import System, running_system
from orchestrator.audit import StoredRecord
from orchestrator.ci import build_deployment_event
from orchestrator.config import Settings
from orchestrator.runs import Exchanged, Run

RUN_TIMEOUT = 30.0


@dataclass(frozen=True)
class ChainRun:
    """A finished run and everything the system recorded of it."""

    run: Run
    audit: tuple[StoredRecord, ...]

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def reason(self) -> str | None:
        return self.run.reason

    def tokens(self, agent: str | None = None) -> list[dict[str, Any]]:
        """The decoded claims of every token the run obtained (``agent``'s only, if given)."""
        return [e.detail.claims for e in self.run.events
                if isinstance(e.detail, Exchanged) and e.detail.claims is not None
                and (agent is None or e.agent == agent)]


class EmbeddedSystem:
    """The running system a test drives; see :func:`embedded_system`."""

    def __init__(self, system: System, secret: str) -> None:
        self.system = system
        self._secret = secret.encode()

    @property
    def settings(self) -> Settings:
        return self.system.settings

    @property
    def endpoints(self) -> dict[str, str]:
        return self.system.endpoints()

    def deploy(self, user: str = "sam", service: str = "service-x", environment: str = "prod",
               *, trigger: str = "ci_pipeline", commit: str = "9f2c1e7", pr: int | None = 124,
               task: str = "deploy", timeout: float = RUN_TIMEOUT) -> ChainRun:
        """Send a signed GitHub ``deployment`` event (``user`` deploys ``service`` to
        ``environment``) and wait for the run it starts to end."""
        delivery = build_deployment_event(user, service, environment, commit, trigger, pr=pr,
                                          task=task, secret=self._secret)
        return self.send(*delivery, timeout=timeout)

    def send(self, headers: dict[str, str], body: bytes, *,
             timeout: float = RUN_TIMEOUT) -> ChainRun:
        """Post one webhook delivery; the receiver must accept it (202); wait for its run."""
        since = datetime.now(UTC)
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            response = http.post(f"{self.system.webhooks_url}/webhooks/github",
                                 headers=headers, content=body)
        answer = response.json() if response.content else {}
        run_id = answer.get("run_id") if isinstance(answer, dict) else None
        if response.status_code != 202 or not isinstance(run_id, str):
            raise AssertionError(f"the webhook receiver did not start a run: "
                                 f"{response.status_code} {answer}")
        run = self.system.runtime.runs.wait(run_id, timeout)
        return ChainRun(run, tuple(self.system.run_records(run_id, since)))


@contextlib.contextmanager
def embedded_system(state_dir: Path, workflows_dir: Path | None = None,
                    **settings: Any) -> Iterator[EmbeddedSystem]:
    """Start an embedded system in ``state_dir``; stop it when the block ends."""
    secret = secrets.token_hex(32)
    values: dict[str, Any] = {
        "state_dir": state_dir, "auth_port": 0, "datadog_port": 0, "github_port": 0,
        "aws_port": 0, "pagerduty_port": 0, "webhooks_port": 0, "service_ports": {},
        "broker_url": "memory://",
        "redis_url": None, "webhook_secret": SecretStr(secret), "log_level": "WARNING",
    }
    if workflows_dir is not None:
        values["workflows_dir"] = workflows_dir
    with running_system(Settings(**{**values, **settings})) as system:
        yield EmbeddedSystem(system, secret)
