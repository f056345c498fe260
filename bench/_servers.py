"""Dependencies of the benchmark's own, to crash and restart: a ``redis-server`` and a RabbitMQ
node, each in its own session on a port of its own, never the machine's shared ones (6379,
5672). Killed with SIGKILL to their own process group (a crash: nothing flushed) and started
again on the same port with the same data directory.

* :class:`RedisServer`: ``persist=False`` keeps nothing (``--save "" --appendonly no``, as the
  revocation registry must run); ``persist=True`` writes an append-only file synced on every
  write (``--appendfsync always``), as a Redis that is a broker should.
* :class:`RabbitNode`: ``rabbitmq-server`` with its own node name, ports, configuration, Mnesia
  and log directories under ``root`` (no plugins), so the machine's node is untouched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kombu import Connection

from bench._cluster import redis_answers

START_TIMEOUT = 60.0


def spare_port() -> int:
    """A loopback port nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A dependency process of ours: started in its own session, crashed by SIGKILL to it."""

    name: str
    root: Path
    starts: int = 0
    popen: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def answers(self) -> bool:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> float:
        """Start it; return the seconds until it answered."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{self.name}-{self.starts}.log").open("wb") as log:
            self.popen = subprocess.Popen(self.argv(), env=self.env(), cwd=self.root,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        began = time.monotonic()
        _until(self.answers, lambda: self.popen is not None and self.popen.poll() is None,
               f"{self.name} did not start ({self.root})")
        return time.monotonic() - began

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to its process group (it leads a session of its own), then reap it."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)


def _until(ready: Callable[[], bool], running: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if not running() or time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.1)


@dataclass
class RedisServer(Server):
    persist: bool = False
    port: int = field(default_factory=spare_port)

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server binary: the chaos benchmark starts its own")
        durability = (["--appendonly", "yes", "--appendfsync", "always"] if self.persist
                      else ["--appendonly", "no"])
        return [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.root), "--protected-mode", "yes", *durability]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        return redis_answers(self.url)


def rabbitmq_server_binary() -> str | None:
    """The server script itself (Debian's ``/usr/sbin`` wrapper switches to the ``rabbitmq``
    user, whose home and cookie are the machine node's), else whatever is on PATH."""
    direct = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    return str(direct) if direct.exists() else shutil.which("rabbitmq-server")


@dataclass
class RabbitNode(Server):
    # spare ports, kept across the node's restarts (a fixed pair could be taken on the machine)
    port: int = field(default_factory=spare_port)
    dist_port: int = field(default_factory=spare_port)

    def argv(self) -> list[str]:
        binary = rabbitmq_server_binary()
        if binary is None:
            raise RuntimeError("no rabbitmq-server: the RabbitMQ rows need one")
        return [binary]

    def env(self) -> dict[str, str]:
        (self.root / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.root / "log").mkdir(parents=True, exist_ok=True)
        conf = self.root / "rabbitmq.conf"
        conf.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        return {**os.environ, "RABBITMQ_NODENAME": f"ibchaos{self.port}@localhost",
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILE": str(conf),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.root / "log")}

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def connection(self) -> Connection:
        return Connection(self.url, connect_timeout=1)

    def answers(self) -> bool:
        connection = self.connection()
        try:
            connection.ensure_connection(max_retries=1)
            return True
        except Exception:  # noqa: BLE001 - any failure to connect means "not yet"
            return False
        finally:
            connection.release()
