"""What an agent process needs to perform hops, built once per process (after any fork).

Everything comes from settings and the state directory: the servers' URLs (``endpoints.json``
written by ``infrabot serve``, or the stack running in this process), the workflows and the run
log. The agents' keys are only those this process was given: a worker loads the keys of its own
queues' agents at start (:func:`install_agent_keys`, before it forks), the embedded system hands
over the keys it made. A hop for any other agent fails; it never signs with another agent's key.
HTTP connections are pooled and reused across hops: one ``httpx.Client`` per process (HTTP/1.1,
keep-alive), shared by the agents' exchanges and calls. A small pool of threads per process asks
for the tokens of overlapped hops (:meth:`AgentRuntime.ahead`, docs/journal.md).
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from orchestrator._dpop_signer import DPoPSigner, dpop_key
from orchestrator._log import get_logger
from orchestrator.catalog import service_names
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import ConfigError, InfraBotError
from orchestrator.identity import Directory, SigningKey, load_directory
from orchestrator.runs import RunStore
from orchestrator.workflows import Workflow, load_workflows

T = TypeVar("T")
# Threads per process asking for tokens ahead (overlapped hops): a worker process performs one
# hop at a time and each hop asks for at most one token ahead; the embedded system runs a few.
AHEAD_THREADS = 4
_lock = threading.Lock()
_runtimes: dict[int, AgentRuntime] = {}
_worker_keys: dict[str, SigningKey] = {}


@dataclass
class AgentRuntime:
    settings: Settings
    endpoints: dict[str, str]
    directory: Directory
    workflows: dict[str, Workflow]
    runs: RunStore
    http: httpx.Client
    static_token: str | None = None
    keys: dict[str, SigningKey] = field(default_factory=dict)
    _auth: dict[str, AuthClient] = field(default_factory=dict)
    _dpop: dict[str, DPoPSigner] = field(default_factory=dict)
    _registered: bool = False
    _ahead: ThreadPoolExecutor | None = None

    @classmethod
    def build(cls, settings: Settings, endpoints: dict[str, str] | None = None,
              keys: dict[str, SigningKey] | None = None) -> AgentRuntime:
        """A runtime holding ``keys`` (default: the keys this worker process loaded)."""
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        workflows = load_workflows(settings.workflows_dir, directory)  # installs its services
        return cls(
            settings=settings,
            endpoints=endpoints or read_endpoints(settings),
            directory=directory,
            workflows=workflows,
            runs=RunStore(settings.runs_target),
            http=httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0),
                              limits=httpx.Limits(max_keepalive_connections=16)),
            static_token=(settings.static_token.get_secret_value()
                          if settings.static_token is not None else None),
            keys=dict(_worker_keys if keys is None else keys),
        )

    def holds_key(self, agent: str) -> bool:
        return agent in self.keys

    def auth(self, agent: str) -> AuthClient:
        """The agent's authorization-server client, authenticating with the agent's own key
        (only an agent whose key this process holds: see :meth:`holds_key`) and signing a DPoP
        proof with the agent's DPoP key. Until that succeeds once, it first registers the DPoP
        key of every agent this process holds, so hand-offs to them can be bound."""
        if not self._registered:
            self.register_dpop_keys()
            self._registered = True
        with _lock:
            client = self._auth.get(agent)
            if client is None:
                key = self.keys.get(agent)
                if key is None:
                    raise ConfigError(f"this process holds no key for {agent}",
                                      reason="agent_key_missing")
                client = AuthClient(self.endpoints["auth"], agent, key, http=self.http,
                                    dpop=self.dpop(agent),
                                    confirm=self.settings.delegation_records)
                self._auth[agent] = client
        return client

    def proves(self, service: str | None) -> bool:
        """Whether an exchange for ``service`` (None: a hand-off) carries a DPoP proof: with
        binding on, always; off (the migration setting), only for a service whose directory
        entry requires bound tokens."""
        entry = self.directory.services.get(service) if service is not None else None
        return self.settings.dpop_binding or (entry is not None
                                              and entry.binding_required(default=False))

    def dpop(self, agent: str) -> DPoPSigner:
        """The DPoP signer of ``agent`` (its key in this state directory)."""
        signer = self._dpop.get(agent)
        if signer is None:
            signer = self._dpop[agent] = DPoPSigner(dpop_key(self.settings.keys_dir, agent))
        return signer

    def register_dpop_keys(self) -> None:
        """Register the DPoP key of every agent this process holds (idempotent)."""
        for agent in sorted(self.keys):
            AuthClient(self.endpoints["auth"], agent, self.keys[agent], http=self.http,
                       dpop=self.dpop(agent)).register_dpop_key()

    def service_url(self, service: str) -> str:
        return self.endpoints[service]

    def ahead(self, work: Callable[[], T]) -> Future[T]:
        """``work`` on this process's small pool (started on first use, so after any fork), in
        the caller's context (its trace): a token asked for while a call is in flight."""
        with _lock:
            if self._ahead is None:
                self._ahead = ThreadPoolExecutor(AHEAD_THREADS, thread_name_prefix="hop-ahead")
            pool = self._ahead
        return pool.submit(contextvars.copy_context().run, work)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.shutdown(wait=True)
        self.http.close()
        self.runs.close()


def read_endpoints(settings: Settings) -> dict[str, str]:
    """``endpoints.json`` if ``infrabot serve`` wrote one, else the configured ports."""
    try:
        data = json.loads(settings.endpoints_file.read_text())
        if isinstance(data, dict) and "auth" in data:
            return {str(k): str(v) for k, v in data.items()}
    except (OSError, ValueError):
        pass
    return {"auth": settings.auth_url, **{n: settings.service_url(n) for n in service_names()}}


def runtime_for(app_id: int, settings: Settings) -> AgentRuntime:
    """The runtime of this process for one Celery app (built on first use)."""
    with _lock:
        runtime = _runtimes.get(app_id)
    if runtime is None:
        runtime = AgentRuntime.build(settings)
        with _lock:
            runtime = _runtimes.setdefault(app_id, runtime)
    return runtime


def install_agent_keys(keys: dict[str, SigningKey]) -> None:
    """A worker process: the agent keys every runtime it builds holds (set before forking)."""
    with _lock:
        _worker_keys.clear()
        _worker_keys.update(keys)


def register_worker_dpop_keys(settings: Settings) -> None:
    """A worker that started: register the DPoP keys of its agents now, before any hop is
    handed to them (a hand-off to an agent with no registered key is refused). A server not
    answering yet is logged; the first hop registers them again."""
    with _lock:
        keys = dict(_worker_keys)
    if not keys:
        return
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0)) as http:
        for agent, key in sorted(keys.items()):
            try:
                AuthClient(read_endpoints(settings)["auth"], agent, key, http=http,
                           dpop=DPoPSigner(dpop_key(settings.keys_dir, agent))
                           ).register_dpop_key()
            except InfraBotError as exc:
                get_logger(agent=agent).warning("dpop_key_unregistered", reason=exc.reason)


def install_runtime(app_id: int, runtime: AgentRuntime) -> None:
    """Embedded mode: hand the in-process runtime to the tasks of one app."""
    with _lock:
        _runtimes[app_id] = runtime


def drop_runtime(app_id: int) -> None:
    with _lock:
        _runtimes.pop(app_id, None)
