"""The distributed mode for real: ``infrabot serve`` and ``infrabot worker`` processes sharing one
state directory and a real Redis (db 14, flushed by the ``e2e_redis_url`` fixture), which is the
revocation registry and, unless ``broker_url`` names RabbitMQ, the broker too.

:class:`Distributed` starts them through the benchmarks' :class:`bench._procs.Processes`, which
stops every process at teardown by pid: SIGTERM (a warm shutdown), then SIGKILL to the process
and to any pool child it left behind. ``Proc.children()`` and :func:`owner_of_connection` find a
worker's pool processes and the one holding a given TCP connection, for the tests that kill one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench._procs import Proc, Processes
from e2e._harness import INFRABOT, QUEUES, RUN_TIMEOUT, SECRET, clean_env, post_webhook
from infrabot.stack import provision_clients
from orchestrator._dpop_signer import DPoPSigner, dpop_key
from orchestrator.audit import AuditStore, contains_raw_jwt
from orchestrator.authserver import open_registry
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.runs import Run, RunStore


def owner_of_connection(local_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP socket whose local port is ``local_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == local_port:
                inodes.add(f"socket:[{cols[9]}]")
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


@dataclass
class Distributed:
    """``infrabot serve`` and ``infrabot worker`` processes sharing one state dir and Redis."""

    root: Path
    redis_url: str
    broker_url: str | None = None  # None: the broker is the Redis of ``redis_url``
    endpoints: dict[str, str] = field(default_factory=dict)
    workflows_dir: Path | None = None  # None: the repository's workflows/
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(logs=self.root, cwd=self.root)

    @property
    def procs(self) -> list[Proc]:
        return self.processes.procs

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def settings(self) -> Settings:
        return Settings(state_dir=self.state_dir, broker_url=self.broker,
                        redis_url=self.redis_url, webhook_secret=SecretStr(SECRET),
                        **({"workflows_dir": self.workflows_dir} if self.workflows_dir else {}))

    def env(self, *, registry: bool = True, **extra: str) -> dict[str, str]:
        """The processes' environment; ``registry`` False: no INFRABOT_REDIS_URL (a worker
        needs none: its only Redis, if any, is a Redis broker)."""
        if self.workflows_dir is not None:
            extra = {"INFRABOT_WORKFLOWS_DIR": str(self.workflows_dir), **extra}
        if registry:
            extra = {"INFRABOT_REDIS_URL": self.redis_url, **extra}
        return clean_env(INFRABOT_STATE_DIR=str(self.state_dir),
                         INFRABOT_BROKER_URL=self.broker,
                         INFRABOT_WEBHOOK_SECRET=SECRET, INFRABOT_LOG_LEVEL="WARNING",
                         INFRABOT_AUDIT_CHECKPOINT_SECONDS="0.5",  # anchored soon after a run
                         PYTHONUNBUFFERED="1", **extra)

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        return self.processes.start(name, [str(INFRABOT), *args], env)

    def serve(self, timeout: float = 30.0, port_base: int = 0) -> dict[str, str]:
        """Start ``infrabot serve`` (every port chosen by the OS, or from ``port_base`` on);
        wait for endpoints.json."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        proc = self._start("serve", ["serve", "--port-base", str(port_base)], self.env())
        path = self.state_dir / "endpoints.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"infrabot serve did not start:\n{proc.output()}")
            time.sleep(0.05)
        self.endpoints = json.loads(path.read_text())
        return self.endpoints

    def provision(self, *agents: str) -> None:
        """What `infrabot keys init` and `keys register` do for ``agents``, in the shared state
        directory (distributed mode's serve makes no agent key)."""
        provision_clients(self.settings, open_registry(self.settings), list(agents))

    def worker(self, queues: Iterable[str] = QUEUES, concurrency: int = 1,
               timeout: float = 30.0, provision: bool = True, registry: bool = True,
               **env: str) -> Proc:
        """Start ``infrabot worker`` on ``queues`` (first making and registering their agents'
        keys, unless not ``provision``; without INFRABOT_REDIS_URL unless ``registry``);
        return once it consumes."""
        queues = list(queues)
        if provision:
            self.provision(*(f"agent:{q}" for q in queues))
        args = ["worker", "--queues", ",".join(queues), "--concurrency", str(concurrency),
                "--loglevel", "INFO"]
        proc = self._start("worker", args, self.env(registry=registry, **env))
        self.wait_output(proc, " ready.", timeout, "infrabot worker did not start")
        return proc

    @staticmethod
    def wait_output(proc: Proc, text: str, timeout: float = 10.0,
                    what: str = "the line never came") -> str:
        """Wait until ``proc``'s log holds ``text`` (a worker logs a task's end only after the
        task returned, so after the run it ended is already visible); return the log."""
        deadline = time.monotonic() + timeout
        while text not in (output := proc.output()):
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {text!r} not in\n{output}")
            time.sleep(0.05)
        return output

    def webhook(self, delivery: tuple[Mapping[str, str], bytes]) -> httpx.Response:
        return post_webhook(self.endpoints["webhooks"], delivery)

    @contextmanager
    def runs(self) -> Iterator[RunStore]:
        with RunStore(self.state_dir / "runs.sqlite3") as store:
            yield store

    @contextmanager
    def audit(self) -> Iterator[AuditStore]:
        with AuditStore(self.settings.audit_db) as store:
            yield store

    def wait_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> Run:
        with self.runs() as store:
            try:
                return store.wait(run_id, timeout=timeout)
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{self.logs()}") from None

    def wait_hop(self, run_id: str, agent: str, timeout: float = RUN_TIMEOUT) -> Run:
        """Block until ``agent``'s hop of the run is done (handed off or ended the run)."""
        deadline = time.monotonic() + timeout
        with self.runs() as store:
            while not store.hop_done(run_id, agent):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{agent} hop of {run_id} not done\n{self.logs()}")
                time.sleep(0.05)
            run = store.get(run_id)
        assert run is not None
        return run

    def auth_client(self, client_id: str) -> AuthClient:
        """An authorization-server client authenticating with ``client_id``'s own key (made
        and registered in the shared state directory if it is not there yet); an agent's signs
        DPoP proofs with the agent's DPoP key there, as its workers do."""
        [key] = provision_clients(self.settings, open_registry(self.settings),
                                  [client_id]).values()
        dpop = (DPoPSigner(dpop_key(self.settings.keys_dir, client_id))
                if client_id.startswith("agent:") else None)
        return AuthClient(self.endpoints["auth"], client_id, key, dpop=dpop)

    def assert_logs_hold_no_token(self) -> None:
        """No process wrote a token to its log (Celery's own lines included)."""
        for proc in self.procs:
            assert not contains_raw_jwt(proc.output()), f"a token in the {proc.name} log"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} {p.pid} ---\n{p.output()[-4000:]}" for p in self.procs)

    def stop(self, proc: Proc, timeout: float = 20.0) -> None:
        self.processes.stop(proc, timeout)

    def close(self) -> None:
        """Stop every process started here, by pid."""
        self.processes.close()
