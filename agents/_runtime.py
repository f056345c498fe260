"""What an agent process needs to perform hops, built once per process (after any fork).

Everything comes from settings and the state directory: the servers' URLs (``endpoints.json``
written by ``infrabot serve``, followed as it changes: agents/_endpoints.py; or the stack running
in this process), the workflows and the run log. The agents' keys are only those this process
was given: a worker loads the keys of its own queues' agents at start
(:func:`install_agent_keys`, before it forks), the embedded system hands over the keys it made.
A hop for any other agent fails; it never signs with another agent's key. HTTP connections are
pooled and reused across hops: one ``httpx.Client`` per process (HTTP/1.1, keep-alive), shared by
the agents' exchanges and calls. A small pool of threads per process asks for the tokens of
overlapped hops (:meth:`AgentRuntime.ahead`, docs/journal.md).

DPoP keys (docs/dpop.md): a process registers the DPoP keys of its agents before its first
exchange and again once half of the registration's ``expires_in`` has passed. A key the server
refuses as revoked (``dpop_key_revoked``) is never used again: it is replaced in the state
directory by a new key, which is registered instead (:func:`register_dpop_key`), at the
latest at the agent's next hop (:meth:`AgentRuntime.replaced_refused_key`).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from agents._endpoints import ServeEndpoints, read_endpoints
from orchestrator._dpop_signer import DPOP_ALG, DPoPSigner, dpop_key, dpop_keys_dir
from orchestrator._log import get_logger
from orchestrator._periodic import run_every
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import ConfigError, InfraBotError, InvalidDPoPProof, OAuthError
from orchestrator.identity import Directory, SigningKey, generate_private_key
from orchestrator.keystore import client_key_path, load_client_key, locked, write_private
from orchestrator.runs import RunStore
from orchestrator.workflows import Workflow, load_directory, load_workflows

T = TypeVar("T")
# Threads per process asking for tokens ahead (overlapped hops): a worker process performs one
# hop at a time and each hop asks for at most one token ahead; the embedded system runs a few.
AHEAD_THREADS = 4
_lock = threading.Lock()
_runtimes: dict[int, AgentRuntime] = {}
_worker_keys: dict[str, SigningKey] = {}
REPLACEMENTS = 3  # revoked DPoP keys replaced in one registration, at most
# An exchange's proof refused as by no key the agent has registered: revoked, perhaps.
KEY_REFUSALS = ("dpop_key_not_registered", "dpop_key_mismatch", "dpop_key_revoked")
_renewal: threading.Thread | None = None  # the worker's DPoP key renewal, once started


@dataclass
class AgentRuntime:
    settings: Settings
    endpoints: Mapping[str, str]  # the URLs given (fixed), or serve's (:class:`ServeEndpoints`)
    directory: Directory
    workflows: dict[str, Workflow]
    runs: RunStore
    http: httpx.Client
    static_token: str | None = field(default=None, repr=False)  # a secret: never printed
    keys: dict[str, SigningKey] = field(default_factory=dict)
    _auth: dict[str, AuthClient] = field(default_factory=dict)
    _dpop: dict[str, DPoPSigner] = field(default_factory=dict)
    _renew_at: float = 0.0  # when the DPoP keys are registered again (0: not yet)
    _registered_with: str = ""  # the authorization server they were registered with
    _ahead: ThreadPoolExecutor | None = None

    @classmethod
    def build(cls, settings: Settings, endpoints: dict[str, str] | None = None,
              keys: dict[str, SigningKey] | None = None) -> AgentRuntime:
        """A runtime holding ``keys`` (default: the keys this worker process loaded), sending
        to ``endpoints`` (default: wherever serve's ``endpoints.json`` says, as it changes)."""
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        workflows = load_workflows(settings.workflows_dir, directory)  # installs its services
        return cls(
            settings=settings,
            endpoints=endpoints or ServeEndpoints(settings),
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
        proof with the agent's DPoP key. Until that succeeds once, and again when half of the
        registration's lifetime has passed, or once the authorization server moved (serve
        restarted elsewhere), it first registers the DPoP key of every agent this process
        holds, so hand-offs to them can be bound."""
        url = self.endpoints["auth"]
        if time.time() >= self._renew_at or url != self._registered_with:
            self.register_dpop_keys()
        with _lock:
            client = self._auth.get(agent)
            if client is None or client.base_url != url.rstrip("/"):
                key = self.keys.get(agent)
                if key is None:
                    raise ConfigError(f"this process holds no key for {agent}",
                                      reason="agent_key_missing")
                client = AuthClient(url, agent, key, http=self.http, dpop=self.dpop(agent),
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
        """Register (renew) the DPoP key of every agent this process holds; an agent whose key
        was revoked gets a new one, and its client here signs with that from now on."""
        url = self.endpoints["auth"]  # one server for all of them, even if serve moves now
        lifetimes = [self._register(agent, self.dpop(agent), url) for agent in sorted(self.keys)]
        shortest = min(lifetimes, default=0)  # 0: the server named no lifetime
        self._renew_at = time.time() + shortest / 2 if shortest > 0 else float("inf")
        self._registered_with = url

    def replaced_refused_key(self, agent: str, refused: DPoPSigner | None,
                             exc: OAuthError) -> bool:
        """``agent``'s exchange, proven by ``refused``, refused for want of a registered key
        (:data:`KEY_REFUSALS`): register again, a new key in place of a revoked one. True if
        it was replaced: that one request is worth asking once more, with the new key. A
        registration refused is logged, and the exchange's refusal stands."""
        if refused is None or not isinstance(exc, InvalidDPoPProof) \
                or exc.reason not in KEY_REFUSALS:
            return False
        try:
            self._register(agent, self.dpop(agent))  # a hop that raced this one may have replaced it
        except OAuthError as failed:
            get_logger(agent=agent).warning("dpop_key_unregistered", reason=failed.reason)
            return False
        return self.dpop(agent).key.kid != refused.key.kid

    def _register(self, agent: str, signer: DPoPSigner, url: str | None = None) -> int:
        signer, lifetime = register_dpop_key(self.settings.keys_dir,
                                             url or self.endpoints["auth"], agent,
                                             self.keys[agent], self.http, signer)
        with _lock:
            if self._dpop.get(agent) is not signer:
                self._dpop[agent] = signer
                self._auth.pop(agent, None)
        return lifetime

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


def runtime_for(app_id: int, settings: Settings) -> AgentRuntime:
    """The runtime of this process for one Celery app (built on first use), for one hop: with
    serve's URLs as its ``endpoints.json`` says now, which the hop keeps to its end."""
    with _lock:
        runtime = _runtimes.get(app_id)
    if runtime is None:
        runtime = AgentRuntime.build(settings)
        with _lock:
            runtime = _runtimes.setdefault(app_id, runtime)
    if isinstance(runtime.endpoints, ServeEndpoints):
        runtime.endpoints.follow()
    return runtime


def install_agent_keys(keys: dict[str, SigningKey]) -> None:
    """A worker process: the agent keys every runtime it builds holds (set before forking)."""
    with _lock:
        _worker_keys.clear()
        _worker_keys.update(keys)


def renew_worker_dpop_keys(settings: Settings, stop: threading.Event,
                           every: float | None = None) -> None:
    """Until ``stop`` is set: :func:`register_worker_dpop_keys` every ``every`` seconds (by
    default half a registration's lifetime), whether or not this host's agents exchange. An
    idle host's registration must not lapse: with only another host's key registered,
    hand-offs are bound to that key alone and this host's hops are refused. Run on a daemon
    thread by :func:`start_dpop_key_renewal`."""
    run_every(lambda: register_worker_dpop_keys(settings),
              every if every is not None else settings.dpop_key_registration_seconds / 2,
              stop, failure_event="dpop_key_renewal_failed")


def start_dpop_key_renewal(settings: Settings) -> None:
    """A worker that started (Celery's ``worker_ready``): register its agents' DPoP keys now,
    then renew them on a daemon thread for the process's life (:func:`renew_worker_dpop_keys`;
    once per process)."""
    register_worker_dpop_keys(settings)
    with _lock:
        global _renewal
        if _renewal is not None:
            return
        _renewal = threading.Thread(target=renew_worker_dpop_keys,
                                    args=(settings, threading.Event()),
                                    name="dpop-key-renewal", daemon=True)
    _renewal.start()


def register_worker_dpop_keys(settings: Settings) -> None:
    """A worker that started: register the DPoP keys of its agents now, before any hop is
    handed to them (a hand-off to an agent with no registered key is refused). A server not
    answering yet is logged; the first hop registers them again."""
    with _lock:
        keys = dict(_worker_keys)
    if not keys:
        return
    auth_url = read_endpoints(settings)["auth"]  # serve's endpoints.json now, as a runtime's
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0)) as http:
        for agent, key in sorted(keys.items()):
            try:
                register_dpop_key(settings.keys_dir, auth_url, agent, key, http,
                                  DPoPSigner(dpop_key(settings.keys_dir, agent)))
            except InfraBotError as exc:
                get_logger(agent=agent).warning("dpop_key_unregistered", reason=exc.reason)


def register_dpop_key(keys_dir: Path, auth_url: str, agent: str, key: SigningKey,
                      http: httpx.Client, signer: DPoPSigner) -> tuple[DPoPSigner, int]:
    """Register ``signer``'s key as ``agent``'s DPoP key (``key``: its client key); if the
    server refuses it as revoked, register a new key made in its place
    (:func:`replace_revoked_dpop_key`). The signer registered, and the seconds its
    registration lasts. The key in the state directory may have been revoked too (another
    process replaced the first one, and that was revoked since): each is replaced in turn, at
    most :data:`REPLACEMENTS` times."""
    for attempt in range(REPLACEMENTS + 1):
        try:
            answer = AuthClient(auth_url, agent, key, http=http, dpop=signer).register_dpop_key()
            break
        except InvalidDPoPProof as exc:
            if exc.reason != "dpop_key_revoked" or attempt == REPLACEMENTS:
                raise
            signer = DPoPSigner(replace_revoked_dpop_key(keys_dir, agent, signer.key.kid))
    lifetime = answer.get("expires_in")
    return signer, lifetime if isinstance(lifetime, int) and lifetime > 0 else 0


def replace_revoked_dpop_key(keys_dir: Path, agent: str, revoked: str) -> SigningKey:
    """``agent``'s DPoP key in place of the revoked key ``revoked`` (its kid): the state
    directory's key if another process replaced it already, else a new one written over it."""
    where = dpop_keys_dir(keys_dir)
    with locked(where):
        current = load_client_key(where, agent)
        if current is None or current.kid == revoked:
            write_private(client_key_path(where, agent), generate_private_key(DPOP_ALG))
            current = load_client_key(where, agent)
    if current is None:
        raise ConfigError(f"cannot make a new DPoP key for {agent} in {where}",
                          reason="dpop_key_missing")
    get_logger(agent=agent).warning("dpop_key_replaced", revoked_kid=revoked, kid=current.kid)
    return current


def install_runtime(app_id: int, runtime: AgentRuntime) -> None:
    """Embedded mode: hand the in-process runtime to the tasks of one app."""
    with _lock:
        _runtimes[app_id] = runtime


def drop_runtime(app_id: int) -> None:
    with _lock:
        _runtimes.pop(app_id, None)
