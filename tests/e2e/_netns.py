"""Hosts for the multi-host test: one Linux network namespace per host, each with one veth
plugged into a bridge that lives in a namespace of its own, on a /24 that exists only inside
these namespaces (nothing is added to the machine's own network). Plus what runs on the "db"
host: a Redis and a PostgreSQL cluster of the test's own, bound to that host's address.

Everything is torn down by pid and ``ip netns del`` when the ``with`` block ends. Needs root
and ``ip netns``; :func:`unavailable` says why not, for a visible skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench._procs import Proc, Processes

SUBNET = "10.213.77"  # a /24 private to the namespaces made here
STEP_TIMEOUT = 30.0


def _run(*argv: str, timeout: float = STEP_TIMEOUT) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, else Debian's newest
    ``/usr/lib/postgresql/N/bin`` (where libpq-dev's pg_config does not name them)."""
    pg_config = shutil.which("pg_config")
    found = [Path(_run(pg_config, "--bindir").strip())] if pg_config else []
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                    reverse=True)
    return next((path for path in found if (path / "initdb").exists()), None)


def unavailable() -> str | None:
    """Why the namespaced hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "redis-server", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if pg_bindir() is None:
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    probe = f"ibmh-probe-{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", probe)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` does not work here: {exc}"
    try:
        _run("ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"veth pairs cannot be made here: {exc}"
    finally:
        _run("ip", "netns", "del", probe)
    return None


@dataclass
class Network:
    """Namespaced hosts on one bridge; :meth:`add` one per component."""

    prefix: str = field(default_factory=lambda: f"ibmh-{uuid.uuid4().hex[:6]}")
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    made: list[str] = field(default_factory=list)  # namespaces, to delete

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def start(self) -> None:
        self._netns(self.hub)
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")

    def add(self, host: str) -> str:
        """A host: its namespace, a veth to the bridge, the next address; returns the address."""
        ns, address = self.namespace(host), f"{SUBNET}.{len(self.hosts) + 1}"
        port = f"v{len(self.hosts)}"
        self._netns(ns)
        _run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
             "netns", self.hub)
        _run("ip", "-n", self.hub, "link", "set", port, "master", "br0", "up")
        _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        self.hosts[host] = address
        return address

    def on(self, host: str, *argv: str) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def close(self) -> None:
        for ns in reversed(self.made):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run("ip", "netns", "del", ns)
        self.made.clear()

    def _netns(self, ns: str) -> None:
        _run("ip", "netns", "add", ns)
        self.made.append(ns)


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster owned by the ``postgres`` user, listening only on
    ``address`` inside ``host``'s namespace and on a unix socket in its directory (which the
    test, outside every namespace, reads the stores through)."""

    network: Network
    host: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ibmh-pg-")))
    port: int = 5432

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{self.network.hosts[self.host]}:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"

    def start(self, database: str) -> None:
        bindir = pg_bindir()
        assert bindir is not None
        shutil.chown(self.root, "postgres", "postgres")
        _run("runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(self.data),
             "-U", "postgres", "--auth=trust", "--no-sync", timeout=60)
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all postgres {SUBNET}.0/24 trust\n")
        options = (f"-c listen_addresses={self.network.hosts[self.host]} -p {self.port} "
                   f"-k {self.root} -c fsync=off -c max_connections=60")
        _run(*self.network.on(self.host, "runuser", "-u", "postgres", "--",
                              str(bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                              "-l", str(self.root / "log"), "-w", "-t", "30", "start"),
             timeout=40)
        with psycopg.connect(self.socket_url("postgres"), autocommit=True,
                             connect_timeout=5) as admin:
            admin.execute(f"CREATE DATABASE {database}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        """Stop the postmaster by the pid it wrote (SIGQUIT: immediate), then remove it all."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis(procs: Processes, network: Network, host: str, port: int = 6379) -> Proc:
    """A Redis of the test's own on ``host``'s address (unpersisted); returns once it answers."""
    proc = procs.start("redis", network.on(
        host, "redis-server", "--bind", network.hosts[host], "--port", str(port), "--save", "",
        "--appendonly", "no", "--protected-mode", "no"), dict(os.environ))
    wait_for(proc, "Ready to accept connections", "redis-server")
    return proc


def wait_for(proc: Proc, text: str, what: str, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.output():
        if not proc.alive() or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start:\n{proc.output()}")
        time.sleep(0.05)


@contextlib.contextmanager
def hosts(*names: str) -> Iterator[Network]:
    """The namespaced hosts ``names`` on one bridge, deleted when the block ends."""
    network = Network()
    try:
        network.start()
        for name in names:
            network.add(name)
        yield network
    finally:
        network.close()
