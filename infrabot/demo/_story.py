"""The demo's story, run for real against an embedded system, collected as data.

A signed CI webhook (sam deploys service-x to prod) starts the post-deploy workflow; the run,
its exchanges and calls, and the audit trail are gathered; then the attack round; then the same
workflow in static-token mode, to show what the audit trail loses without delegation. The
result holds decoded claims and records, never a raw token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from infrabot._delegation_view import run_chains
from infrabot.demo._attacks import Attack, AttackRound
from infrabot.system import System, running_system
from orchestrator.audit import StoredRecord
from orchestrator.ci import ROUTE, CIEvent, build_deployment_event, webhook_key
from orchestrator.config import Settings
from orchestrator.runs import CallDenied, ExchangeDenied, Run, RunStore, SpanLog, SpanRecord
from orchestrator.workflows import Workflow

EVENT = {"user_login": "sam", "service": "service-x", "environment": "prod",
         "commit": "9f2c1e7", "pr": 124}
RUN_TIMEOUT = 30.0


@dataclass
class DemoResult:
    event: dict[str, Any]
    run: Run
    audit: list[StoredRecord]
    user_permissions: list[str]
    attacks: list[Attack] = field(default_factory=list)
    static_run: Run | None = None
    static_audit: list[StoredRecord] = field(default_factory=list)
    audit_intact: bool = False
    seconds: float = 0.0
    endpoints: dict[str, str] = field(default_factory=dict)
    trace: list[SpanRecord] = field(default_factory=list)  # the run's spans, when kept
    # Each delegation_chain the run's tokens carried, each record with its status
    delegation_chains: list[dict[str, Any]] = field(default_factory=list)
    workflow: Workflow | None = None  # the workflow the run ran, as the system loaded it

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "run": self.run.model_dump(mode="json"),
            "trace_id": self.run.trace_id,  # the run's trace: the audit records name it too
            "audit": [r.to_json() for r in self.audit],
            "user_permissions": self.user_permissions,
            "attacks": [a.as_dict() for a in self.attacks],
            "delegation_chains": self.delegation_chains,
            "static_run": self.static_run.model_dump(mode="json") if self.static_run else None,
            "static_audit": [r.to_json() for r in self.static_audit],
            "audit_intact": self.audit_intact,
            "endpoints": self.endpoints,
            "seconds": round(self.seconds, 3),
        }


def demo_settings(settings: Settings, *, static: bool = True) -> Settings:
    """The embedded default on free loopback ports, whatever the environment says; with a
    fresh static service token for the baseline comparison when ``static``."""
    ports = dict.fromkeys(("auth_port", "datadog_port", "github_port", "aws_port",
                           "pagerduty_port", "webhooks_port"), 0)
    token = SecretStr(secrets.token_urlsafe(32)) if static else None
    return settings.model_copy(update={**ports, "broker_url": "memory://localhost/",
                                       "redis_url": None, "issuer": None,
                                       "static_token": token})


def _send(system: System, http: httpx.Client, **event: Any) -> str:
    secret = webhook_key(system.settings)
    headers, body = build_deployment_event(**{**EVENT, **event}, secret=secret)
    response = http.post(system.webhooks_url + ROUTE, headers=headers, content=body)
    response.raise_for_status()
    return str(response.json()["run_id"])


def run_demo(settings: Settings, *, attacks: bool = True, static: bool = True,
             progress: Callable[[str], None] = lambda _: None) -> DemoResult:
    started = time.perf_counter()
    since = datetime.now(UTC)
    with running_system(demo_settings(settings, static=static)) as system, \
            httpx.Client(timeout=10) as http:
        progress("CI event: sam deploys service-x to prod")
        run = system.runtime.runs.wait(_send(system, http), RUN_TIMEOUT)
        result = DemoResult(event=EVENT, run=run, audit=system.run_records(run.run_id, since),
                            user_permissions=list(system.stack.directory.users["user:sam"]
                                                  .permissions),
                            endpoints=system.endpoints(),
                            delegation_chains=run_chains(system.stack.settings, run),
                            workflow=system.runtime.workflows.get(run.workflow))
        if attacks:
            progress("attack round")

            def manual_prod() -> tuple[int, str, str]:
                manual = system.runtime.runs.wait(
                    _send(system, http, trigger="manual"), RUN_TIMEOUT)
                denied = [e.detail for e in manual.events
                          if isinstance(e.detail, ExchangeDenied | CallDenied)]
                if manual.status != "denied" or not denied:
                    return 200, "none", manual.status
                d = denied[0]
                if isinstance(d, CallDenied):
                    return d.status, "insufficient_scope", d.reason
                return 400, d.error, d.reason

            result.attacks = [attack.with_audit(system.stack.audit)
                              for attack in AttackRound(system).run(manual_prod)]
        if static:
            progress("the same workflow with one static service token")
            static_since = datetime.now(UTC)
            run_id = system.orchestrator.start(_static_event(), mode="static")
            result.static_run = system.runtime.runs.wait(run_id, RUN_TIMEOUT)
            result.static_audit = system.run_records(run_id, static_since)
        result.audit_intact = system.stack.audit.verify().ok
    if run.trace_id:  # the system stopped, so every span it finished was written
        with RunStore(demo_settings(settings, static=static).runs_target) as store:
            result.trace = SpanLog(store).of_trace(run.trace_id)
    result.seconds = time.perf_counter() - started
    return result


def _static_event() -> Any:

    return CIEvent(delivery_id=f"static-{secrets.token_hex(8)}", event_type="deployment",
                   user="user:sam", sender_login="sam", repository="acme/service-x",
                   service="service-x", environment="prod", commit="9f2c1e7",
                   trigger="ci_pipeline", pr=124, ref="main")
