"""Running several ASGI apps on loopback in one process, each on its own port (its own origin).

Sockets are bound before the apps are built, so a port chosen by the OS (port 0) is known in time
to become part of the apps' own URLs (issuer, audiences). One background thread runs one event
loop serving every app with uvicorn; :meth:`ServerGroup.stop` shuts them down cleanly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Self

import uvicorn

from orchestrator.errors import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 lets the OS choose)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # lets asyncio set TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(512)
    sock.setblocking(False)
    return sock


class ServerGroup:
    def __init__(self) -> None:
        self._servers: list[tuple[uvicorn.Server, socket.socket]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    def add(self, app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)  # in a non-main thread it installs no signal handler
        self._servers.append((server, sock))

    def start(self, timeout: float = 15.0) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._serve_all(ready))
            except BaseException as exc:  # noqa: BLE001 - reported to the starter
                self._error = exc
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="infrabot-servers", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            self.stop()
            raise ConfigError(f"servers did not start: {self._error!r}")

    async def _serve_all(self, ready: threading.Event) -> None:
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in self._servers]
        while not all(s.started for s, _ in self._servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.gather(*tasks)

    def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for _, sock in self._servers:
            sock.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
