"""The whole product running: servers, orchestrator, webhook receiver and (embedded) a worker.

* Embedded (``broker_url`` ``memory://``, the default): one process: the authorization server,
  the four services and the webhook receiver on loopback origins, an in-memory broker with a
  short polling interval, and an in-process Celery worker consuming every agent queue.
* Distributed: ``infrabot serve`` runs the same servers with the broker and the revocation
  registry on Redis; ``infrabot worker`` processes run the agents.

Either way this process also enforces the run deadline (:mod:`orchestrator._deadline`): a run
whose queued work was lost ends ``failed`` instead of staying ``running``; and it revokes every
run that ended, so no token of it is accepted again (:mod:`orchestrator._run_end`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from celery.worker import state
from opentelemetry.sdk.trace.export import SpanExporter

from agents._runtime import AgentRuntime, drop_runtime, install_runtime
from agents.tasks import WAKE_TASK, dispatcher
from infrabot.celery_app import create_celery
from infrabot.stack import ORCHESTRATOR_CLIENT, Stack, bind_ports, write_endpoints
from orchestrator._deadline import RunDeadline, deadline_sweeper
from orchestrator._run_end import EndedRuns, ended_run_revoker
from orchestrator._servers import ServerGroup
from orchestrator.audit import StoredRecord, checkpoint_ticker
from orchestrator.ci import (
    RunRequests,
    WebhookReceiver,
    create_webhook_app,
    webhook_key,
    with_webhook_secret,
)
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.orchestration import Orchestrator
from orchestrator.services import service_files
from orchestrator.tracing import instrument_app, start_tracing, traced_record

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

    def run_records(self, run_id: str, since: datetime) -> list[StoredRecord]:
        """The audit records of one run written since ``since``: by run id, or by the request
        ids the run's hops sent (records of refusals before a token was read carry no run)."""
        return [r for r in self.stack.audit.query(since=since)
                if r.run_id == run_id or (r.request_id or "").startswith(run_id)]


@contextlib.contextmanager
def _worker(app: Celery, queues: list[str], *, ready_timeout: float = 30.0) -> Iterator[None]:
    """An in-process Celery worker thread consuming ``queues`` (embedded mode).

    ``app.WorkController`` is Celery's embeddable worker (no signal handlers, no banner); its
    ``ready_callback`` says when the consumer is up. It stops the way Celery's own SIGTERM
    handler stops a worker, a warm shutdown: ``celery.worker.state.should_stop``, which the
    consumer loop checks between polls of the broker; the wake tasks end the poll in progress
    (docs/in-process.md).
    """
    app.finalize()
    app.set_current()
    app.set_default()
    app.log.setup(loglevel="WARNING", logfile=None)
    ready = threading.Event()
    worker = app.WorkController(
        concurrency=1, pool="solo", loglevel="WARNING", logfile=None,
        hostname=f"embedded-{id(app)}@localhost", queues=queues,
        ready_callback=lambda _consumer: ready.set(),
        without_heartbeat=True, without_mingle=True, without_gossip=True)
    thread = threading.Thread(target=worker.start, name="infrabot-worker", daemon=True)
    thread.start()
    try:
        if not _started(ready, thread, ready_timeout):
            raise ConfigError(f"the embedded worker did not start within {ready_timeout:g} s")
        yield
    finally:
        state.should_stop = 0  # exit code 0: a warm shutdown
        for _ in range(2):  # one wakes the poll in progress, one the poll after the stop
            app.send_task(WAKE_TASK, queue=queues[0])
        thread.join(15)
        state.should_stop = None


def _started(ready: threading.Event, thread: threading.Thread, timeout: float) -> bool:
    """Whether the worker said it is ready before ``timeout``; False at once if it died."""
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            return False
    return True


@contextlib.contextmanager
def running_system(settings: Settings, *, embedded_worker: bool | None = None,
                   write_endpoints_file: bool = False,
                   deadline_clock: Callable[[], float] = time.time,
                   span_exporters: list[SpanExporter] | None = None) -> Iterator[System]:
    """Start everything ``settings`` describe; stop it all when the block ends.

    ``deadline_clock`` is the run deadline's clock (a test moves it instead of waiting);
    ``span_exporters`` replace where the spans go (docs/tracing.md)."""
    if embedded_worker is None:
        embedded_worker = settings.broker_url.startswith("memory://")
    declared = tuple(service_files(settings.workflows_dir))  # each its own origin, like the four
    unknown = sorted(set(settings.service_ports) - set(declared))
    if unknown:  # a typo would otherwise leave the service on a port the OS picked
        raise ConfigError(f"INFRABOT_SERVICE_PORTS names {', '.join(unknown)}, which the "
                          f"workflows directory does not declare (its services: "
                          f"{', '.join(declared) or 'none'})")
    settings, sockets = bind_ports(with_webhook_secret(settings),
                                   (*SERVER_NAMES[:-1], *declared, SERVER_NAMES[-1]))
    group = ServerGroup()
    stack: Stack | None = None
    runtime: AgentRuntime | None = None
    app: Celery | None = None
    exits = contextlib.ExitStack()
    try:
        traced = exits.enter_context(start_tracing(settings, "infrabot",
                                                   exporters=span_exporters))
        stack = Stack.build(settings)
        if traced:  # each audit record joins its trace, each span gets the record's decision
            stack.audit.before_append(traced_record)
        app = create_celery(settings, stack.directory)
        runtime = AgentRuntime.build(settings, endpoints=stack.endpoints(), keys={
            cid: key for cid, key in stack.clients.items() if cid in stack.directory.agents})
        install_runtime(id(app), runtime)
        ended = EndedRuns(runtime.runs, stack.revocation, stack.audit,
                          settings.root_token_ttl_seconds)
        runtime.runs.on_finish(ended.run_ended)  # revoked, and recorded, before the checkpoint
        if stack.checkpointer is not None:  # runs that end in this process are anchored then
            runtime.runs.on_finish(stack.checkpointer.run_ended)
            exits.enter_context(checkpoint_ticker(stack.checkpointer))
        auth = exits.enter_context(AuthClient(
            settings.auth_url, ORCHESTRATOR_CLIENT, stack.clients[ORCHESTRATOR_CLIENT],
            http=runtime.http))
        orch = Orchestrator(stack.directory, runtime.workflows, runtime.runs, auth,
                            dispatcher(app), static_token=runtime.static_token)
        receiver = WebhookReceiver(
            secret=webhook_key(settings),
            replay=stack.revocation, directory=stack.directory, audit=stack.audit,
            start_run=orch.start, deliveries=runtime.runs)
        run_requests = RunRequests(  # POST /runs: a person's own IdP token (docs/federation.md)
            stack.auth.user_tokens, stack.audit,
            lambda event, workflow, token: orch.start(event, workflow=workflow, user_token=token))
        apps: dict[str, Any] = {name: instrument_app(sub) for name, sub in {
            **stack.apps(), "webhooks": create_webhook_app(receiver, run_requests)}.items()}
        for name, sub in apps.items():
            group.add(sub, sockets.pop(name))
        group.start()
        if embedded_worker:
            exits.enter_context(_worker(app, sorted(stack.directory.queues().values())))
        exits.enter_context(deadline_sweeper(RunDeadline(
            runtime.runs, stack.revocation, settings.run_deadline_seconds,
            clock=deadline_clock)))
        exits.enter_context(ended_run_revoker(ended))
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
