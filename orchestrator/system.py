"""The whole product running: servers, orchestrator, webhook receiver and (embedded) a worker.

* Embedded (``broker_url`` ``memory://``, the default): one process: the authorization server,
  the four services and the webhook receiver on loopback origins, an in-memory broker with a
  short polling interval, and an in-process Celery worker consuming every agent queue.
* Distributed: ``infrabot serve`` runs the same servers with the broker and the revocation
  registry on Redis; ``infrabot worker`` processes run the agents.

Either way this process also enforces the run deadline (:mod:`orchestrator._deadline`): a run
whose queued work was lost ends ``failed`` instead of staying ``running``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from celery import Celery

from agents._runtime import AgentRuntime, drop_runtime, install_runtime
from agents.tasks import WAKE_TASK
from orchestrator._deadline import RunDeadline, deadline_sweeper
from orchestrator._servers import ServerGroup
from orchestrator.celery_app import create_celery
from orchestrator.ci import WebhookReceiver, create_webhook_app
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.orchestration import Orchestrator
from orchestrator.stack import ORCHESTRATOR_CLIENT, Stack, bind_ports, write_endpoints

SERVER_NAMES = ("auth", "datadog", "github", "aws", "pagerduty", "webhooks")


@dataclass
class System:
    stack: Stack
    celery: Celery
    orchestrator: Orchestrator
    runtime: AgentRuntime
    apps: dict[str, Any]

    def service_state(self, name: str) -> Any:
        """A mock service's in-memory state (what the service saw happen)."""
        return self.apps[name].state.service

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    def endpoints(self) -> dict[str, str]:
        return {**self.stack.endpoints(), "webhooks": self.webhooks_url}

    @property
    def webhooks_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.webhooks_port}"


@contextlib.contextmanager
def _worker(app: Celery, queues: list[str]) -> Iterator[None]:
    """An in-process Celery worker thread consuming ``queues`` (embedded mode)."""
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from celery.worker import state

    setup_app_for_worker(app, "WARNING", None)
    worker = TestWorkController(
        app=app, concurrency=1, pool="solo", loglevel="WARNING", logfile=None,
        hostname=f"embedded-{id(app)}@localhost", ready_callback=None, queues=queues,
        without_heartbeat=True, without_mingle=True, without_gossip=True)
    thread = threading.Thread(target=worker.start, name="infrabot-worker", daemon=True)
    thread.start()
    worker.ensure_started()
    try:
        yield
    finally:
        state.should_terminate = 0
        for _ in range(2):  # one wakes the poll in progress, one the poll after the stop
            app.send_task(WAKE_TASK, queue=queues[0])
        thread.join(15)
        state.should_terminate = None


@contextlib.contextmanager
def running_system(settings: Settings, *, embedded_worker: bool | None = None,
                   write_endpoints_file: bool = False) -> Iterator[System]:
    """Start everything ``settings`` describe; stop it all when the block ends."""
    if embedded_worker is None:
        embedded_worker = settings.broker_url.startswith("memory://")
    settings, sockets = bind_ports(settings, SERVER_NAMES)
    group = ServerGroup()
    stack: Stack | None = None
    runtime: AgentRuntime | None = None
    app: Celery | None = None
    exits = contextlib.ExitStack()
    try:
        stack = Stack.build(settings)
        app = create_celery(settings)
        runtime = AgentRuntime.build(settings, endpoints=stack.endpoints(), keys={
            cid: key for cid, key in stack.clients.items() if cid in stack.directory.agents})
        install_runtime(id(app), runtime)
        auth = exits.enter_context(AuthClient(
            settings.auth_url, ORCHESTRATOR_CLIENT, stack.clients[ORCHESTRATOR_CLIENT],
            http=runtime.http))
        orch = Orchestrator(stack.directory, runtime.workflows, runtime.runs, auth, app,
                            static_token=runtime.static_token)
        receiver = WebhookReceiver(
            secret=settings.webhook_secret.get_secret_value().encode(),
            replay=stack.revocation, directory=stack.directory, audit=stack.audit,
            start_run=orch.start, deliveries=runtime.runs)
        apps: dict[str, Any] = {**stack.apps(), "webhooks": create_webhook_app(receiver)}
        for name, sub in apps.items():
            group.add(sub, sockets.pop(name))
        group.start()
        if embedded_worker:
            exits.enter_context(_worker(app, ["infrabot", "argocd", "cleanup"]))
        exits.enter_context(deadline_sweeper(RunDeadline(
            runtime.runs, stack.revocation, stack.audit, settings.run_deadline_seconds)))
        system = System(stack, app, orch, runtime, apps)
        if write_endpoints_file:
            write_endpoints(settings, system.endpoints())
        yield system
    finally:
        exits.close()
        group.stop()
        for sock in sockets.values():
            sock.close()
        if app is not None:
            drop_runtime(id(app))
            app.close()
        if runtime is not None:
            runtime.close()
        if stack is not None:
            stack.close()
