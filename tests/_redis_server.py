"""A throw-away ``redis-server`` of the test's own, on a spare loopback port, keeping nothing
on disk (``--save "" --appendonly no``): a restart loses every key, as a crash of an unpersisted
Redis does; or (``appendonly=True``) with an append-only file synced on every write, as a Redis
that is a broker should run, so a restart keeps what was written. Started and stopped by pid;
never the shared Redis at 6379.

Follows the convention of tests/conftest.py: without a ``redis-server`` binary the test skips
with a visible reason, except on CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import redis

from tests._tls import ServerCertificate


def spare_port() -> int:
    """A loopback port nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no redis-server binary: CI must provide one")
        pytest.skip("no redis-server binary: install redis-server")
    return found


class RedisServer:
    """``redis-server --port <spare> --save "" --appendonly no`` in ``root`` (or
    ``--appendonly yes --appendfsync always``; or, given ``tls``, TLS only on that port)."""

    def __init__(self, root: Path, port: int | None = None, *, appendonly: bool = False,
                 tls: ServerCertificate | None = None) -> None:
        self.root = root
        self.appendonly = appendonly
        self.tls = tls
        self.port = port or spare_port()
        self.binary = redis_server_binary()
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/{db}?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis.from_url(self.url(), **options)  # type: ignore[arg-type]

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self, timeout: float = 10.0) -> None:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"redis-{self.starts}.log").open("wb")
        self.starts += 1
        durability = (["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly
                      else ["--appendonly", "no"])
        listen = ["--port", str(self.port)] if self.tls is None else [
            "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "no"]
        self.popen = subprocess.Popen(
            [self.binary, *listen, "--bind", "127.0.0.1", "--save", "",
             *durability, "--dir", str(self.root), "--protected-mode", "yes"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        # "is it up?", not a check of its certificate's name (tests make some for other hosts)
        probe = {"ssl_check_hostname": False} if self.tls is not None else {}
        client = self.client(socket_connect_timeout=0.2, socket_timeout=0.5, **probe)
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.RedisError, OSError):
                    if self.popen.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"redis-server did not start on {self.port}:\n"
                                             f"{self.output()}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Stop the server by its pid (SIGKILL by default: a crash, nothing flushed)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def output(self) -> str:
        logs = sorted(self.root.glob("redis-*.log"))
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in logs)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
