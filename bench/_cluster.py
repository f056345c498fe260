"""Distributed mode, for real: ``infrabot serve`` and ``infrabot worker`` processes over Redis.

The benchmark process drives runs the way :meth:`Orchestrator.start` does (it builds one, with
the orchestrator's own key from the shared state directory) instead of posting webhooks, so a
run's latency is the run's own (``created_at`` to ``finished_at`` in the run log). Redis is the
benchmarks' database only (db 12 by default), flushed when a cluster starts.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from celery import Celery
from pydantic import SecretStr

from agents.tasks import dispatcher
from bench._procs import BIN, Proc, Processes, clean_env
from infrabot.celery_app import create_celery
from infrabot.stack import ORCHESTRATOR_CLIENT, provision_clients
from orchestrator.authserver import open_registry
from orchestrator.ci import CIEvent
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.keystore import client_key
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import RunStore
from orchestrator.runs._schema import parse_time
from orchestrator.workflows import load_directory, load_workflows

QUEUES = ("infrabot", "argocd", "cleanup")
START_TIMEOUT = 60.0


def flush(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def next_db(redis_url: str) -> str:
    """The same Redis server's next database number (a second cluster's, flushed as it starts)."""
    parts = urlsplit(redis_url)
    number = int(parts.path.strip("/") or 0) + 1
    return urlunsplit((parts.scheme, parts.netloc, f"/{number}", "", ""))


def redis_answers(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def event(user: str = "user:sam", *, index: int = 0) -> CIEvent:
    """sam deploys service-x to prod from CI: the post-deploy workflow's event."""
    return CIEvent(delivery_id=f"bench-{uuid.uuid4().hex[:12]}-{index}", event_type="deployment",
                   user=user, sender_login=user.removeprefix("user:"),
                   repository="acme/service-x", service="service-x", environment="prod",
                   commit="9f2c1e7", trigger="ci_pipeline", pr=124)


@dataclass(frozen=True)
class Finished:
    """A terminal run as the run log records it (times in epoch seconds)."""

    run_id: str
    status: str
    reason: str
    created: float
    finished: float

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.created) * 1000


@dataclass
class Cluster:
    """One state directory, one Redis db, the processes serving it and a driver for runs."""

    root: Path
    redis_url: str
    database_url: str | None = None  # the stores' PostgreSQL; None: SQLite in the state dir
    static_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    broker_url: str | None = None  # None: the broker is the Redis of ``redis_url``
    extra_env: dict[str, str] = field(default_factory=dict)  # INFRABOT_* for every process
    workflows_dir: Path | None = None  # None: the shipped workflows
    procs: Processes = field(init=False)
    endpoints: dict[str, str] = field(default_factory=dict)
    serve_proc: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    _orch: Orchestrator | None = None
    _app: Celery | None = None
    _auth: AuthClient | None = None
    _runs: RunStore | None = None

    def __post_init__(self) -> None:
        self.procs = Processes(self.root / "logs")

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def settings(self) -> Settings:
        database: dict[str, Any] = {"database_url": SecretStr(self.database_url)} \
            if self.database_url else {}
        if self.workflows_dir is not None:
            database["workflows_dir"] = self.workflows_dir
        return Settings(state_dir=self.state_dir, broker_url=self.broker_url or self.redis_url,
                        redis_url=self.redis_url, static_token=SecretStr(self.static_token),
                        log_level="WARNING", **database, **self._ports())

    def _ports(self) -> dict[str, Any]:
        if not self.endpoints:
            return {}
        ports: dict[str, Any] = {"service_ports": {}}  # declared services: no field of their own
        for name, url in self.endpoints.items():
            port = int(url.rsplit(":", 1)[1])
            if f"{name}_port" in Settings.model_fields:
                ports[f"{name}_port"] = port
            else:
                ports["service_ports"][name] = port
        return ports

    def env(self) -> dict[str, str]:
        database = {"INFRABOT_DATABASE_URL": self.database_url} if self.database_url else {}
        if self.workflows_dir is not None:
            database["INFRABOT_WORKFLOWS_DIR"] = str(self.workflows_dir)
        return clean_env(INFRABOT_STATE_DIR=str(self.state_dir),
                         INFRABOT_BROKER_URL=self.broker_url or self.redis_url,
                         INFRABOT_REDIS_URL=self.redis_url,
                         INFRABOT_STATIC_TOKEN=self.static_token, INFRABOT_LOG_LEVEL="WARNING",
                         PYTHONUNBUFFERED="1", **database, **self.extra_env)

    # -- processes -------------------------------------------------------------------------

    def start(self, workers: int = 2) -> None:
        flush(self.redis_url)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.serve()
        self.start_workers(workers)

    def serve(self, *, same_ports: bool = False) -> None:
        """Start ``infrabot serve``: on ports the OS picks, or (``same_ports``, a restart) on
        the ports of the last start; returns once it wrote ``endpoints.json``."""
        path = self.state_dir / "endpoints.json"
        argv, env = [str(BIN / "infrabot"), "serve", "--port-base", "0"], self.env()
        if same_ports:
            path.unlink(missing_ok=True)
            argv = argv[:2]
            env.update({f"INFRABOT_{k.upper()}": str(v) if isinstance(v, int) else json.dumps(v)
                        for k, v in self._ports().items()})
        proc = self.procs.start("serve", argv, env)
        deadline = time.monotonic() + START_TIMEOUT
        while not path.exists():
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"infrabot serve did not start:\n{proc.output()[-3000:]}")
            time.sleep(0.05)
        self.endpoints = json.loads(path.read_text())
        self.serve_proc = proc

    def start_workers(self, count: int, *, app: str | None = None) -> list[Proc]:
        """``count`` ``infrabot worker -c 1`` processes (or ``celery -A app worker``), each
        consuming every agent queue; returns once each says it is ready.

        ``infrabot worker`` takes no node name, so readiness is read from the worker's own
        ``ready.`` line (at ``--loglevel INFO``, which every worker here gets alike)."""
        started = []
        if app is None:  # what `infrabot keys init` + `keys register` do on a worker host
            directory = load_directory(self.settings.workflows_dir / "directory.yaml")
            provision_clients(self.settings, open_registry(self.settings),
                              sorted(directory.agents))  # every agent's queue is consumed
        for index in range(count):
            if app is None:
                argv = [str(BIN / "infrabot"), "worker", "-c", "1", "--loglevel", "INFO"]
            else:
                argv = [str(BIN / "celery"), "-A", app, "worker", "-c", "1", "--loglevel",
                        "INFO", "-Q", ",".join(QUEUES), "-n", f"bare{index}@%h",
                        "--without-gossip", "--without-mingle", "--without-heartbeat"]
            started.append(self.procs.start("worker" if app is None else "bare-worker", argv,
                                            self.env()))
        deadline = time.monotonic() + START_TIMEOUT
        for proc in started:
            while " ready." not in proc.output():
                if not proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{proc.output()[-3000:]}")
                time.sleep(0.05)
        self.workers.extend(started)
        return started

    def stop_workers(self) -> None:
        for proc in self.workers:
            self.procs.stop(proc)
        self.workers.clear()

    def close(self) -> None:
        for closeable in (self._auth, self._runs):
            if closeable is not None:
                closeable.close()
        if self._app is not None:
            self._app.close()
        self.procs.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the driver ------------------------------------------------------------------------

    @property
    def celery(self) -> Celery:
        if self._app is None:
            self._app = create_celery(self.settings)
        return self._app

    @property
    def runs(self) -> RunStore:
        if self._runs is None:
            self._runs = RunStore(self.settings.runs_target)
        return self._runs

    @property
    def orchestrator(self) -> Orchestrator:
        """Roots runs exactly as the webhook receiver's orchestrator does."""
        if self._orch is None:
            s = self.settings
            directory = load_directory(s.workflows_dir / "directory.yaml")
            key = client_key(s.keys_dir / "clients", ORCHESTRATOR_CLIENT, s.signing_alg)
            self._auth = AuthClient(self.endpoints["auth"], ORCHESTRATOR_CLIENT, key)
            self._orch = Orchestrator(directory, load_workflows(s.workflows_dir, directory),
                                      self.runs, self._auth, dispatcher(self.celery),
                                      static_token=self.static_token)
        return self._orch

    def start_run(self, mode: str, index: int = 0) -> str:
        return self.orchestrator.start(event(index=index), mode=mode)

    def wait_runs(self, run_ids: list[str], timeout: float,
                  poll: float = 0.01) -> list[Finished]:
        """Every run once terminal, bounded by ``timeout``; polls the run log with one light
        query (not :meth:`RunStore.get`, which reads every event) to leave the CPU to the
        processes being measured."""
        pending = set(run_ids)
        done: dict[str, Finished] = {}
        deadline = time.monotonic() + timeout
        with self._run_log() as (conn, mark):
            while pending:
                ids = list(pending)
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    rows = conn.execute(
                        "SELECT run_id, status, reason, created_at, finished_at FROM runs "
                        f"WHERE finished_at IS NOT NULL AND run_id IN "
                        f"({', '.join([mark] * len(chunk))})", chunk).fetchall()
                    for run_id, status, reason, created, finished in rows:
                        done[run_id] = Finished(run_id, status, reason or "",
                                                parse_time(created).timestamp(),
                                                parse_time(finished).timestamp())
                        pending.discard(run_id)
                if pending:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(pending)} runs unfinished after {timeout:g} s"
                                           f"\n{self.logs()}")
                    time.sleep(poll)
        return [done[r] for r in run_ids]

    @contextmanager
    def _run_log(self) -> Iterator[tuple[Any, str]]:
        """A plain read connection to the run log, and its placeholder."""
        if self.database_url is not None:
            with psycopg.connect(self.database_url, autocommit=True) as pg:
                yield pg, "%s"
            return
        with sqlite3.connect(f"file:{self.state_dir / 'runs.sqlite3'}?mode=ro", uri=True,
                             timeout=10) as conn:
            yield conn, "?"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} {p.pid} ---\n{p.output()[-2000:]}"
                         for p in self.procs.procs)
