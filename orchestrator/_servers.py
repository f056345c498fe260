"""Running several ASGI apps on loopback in one process, each on its own port (its own origin).

Sockets are bound before the apps are built, so a port chosen by the OS (port 0) is known in time
to become part of the apps' own URLs (issuer, audiences). One background thread runs one event
loop serving every app with uvicorn; :meth:`ServerGroup.stop` shuts them down cleanly.

The loop is uvloop's and the HTTP parser httptools (both C) when installed, as the project's
dependencies have them: against asyncio's loop and h11 (pure Python) the server spends about 15%
less CPU on a token exchange and 40% less on a bare GET. httptools sets no limit on a request's
head, so :data:`HTTP_PROTOCOL` adds one, as h11 has. Without them (a platform with no wheel),
asyncio's loop and h11 serve the same.

Only uvicorn's public API runs the servers: ``Config``, ``Server``, ``serve(sockets=...)``, and
the ``started`` and ``should_exit`` flags. The head bound has no public hook under httptools, so
:class:`BoundedHttpTools` subclasses uvicorn's private protocol class; ``pyproject.toml`` caps
uvicorn below its next minor release and ``tests/authserver/test_request_head_bound.py`` says why
(docs/in-process.md).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Self

import uvicorn

from orchestrator.errors import ConfigError

MAX_HEAD_BYTES = 128 * 1024
"""The most a request line and headers may take: the largest token the settings allow (64 KiB)
fits with room to spare. h11 refuses a head still incomplete past 16 KiB; httptools has no limit."""

HTTP_PROTOCOL: type[asyncio.Protocol] | str
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: h11, which bounds the head itself
    HTTP_PROTOCOL = "h11"
else:
    class BoundedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol refusing a request whose head is still incomplete after
        :data:`MAX_HEAD_BYTES`, as h11 does: 400 and the connection closed.

        Only reads wholly inside one request's head are counted, so nothing of an earlier request
        on the connection counts against the next; the read a head starts in is not counted, so
        a head is held to at most one read more than the limit.
        """

        _requests = 0  # requests begun on this connection
        _in_head = False
        _head_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._requests += 1
            self._in_head, self._head_bytes = True, 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            open_head = self._requests if self._in_head else None
            super().data_received(data)
            if not self._in_head or self._requests != open_head or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.logger.warning("Request head too large.")
                self.send_400_response("Request head too large.")

    HTTP_PROTOCOL = BoundedHttpTools


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


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed, else asyncio's (it sets TCP_NODELAY on every
    TCP connection, as asyncio does on sockets that say IPPROTO_TCP: see :func:`bind`)."""
    try:
        import uvloop  # deferred: optional, absent on some installs
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ServerGroup:
    def __init__(self) -> None:
        self._servers: list[tuple[uvicorn.Server, socket.socket]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    def add(self, app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
        config = uvicorn.Config(app, http=HTTP_PROTOCOL, ws="none", log_level=log_level,
                                access_log=False, lifespan="off", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)  # in a non-main thread it installs no signal handler
        self._servers.append((server, sock))

    def start(self, timeout: float = 15.0) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = new_event_loop()
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
        for server, sock in self._servers:
            sock.close()
            # a stopped app's own close hook: a mock service writes its open anonymous counts
            close = getattr(getattr(server.config.app, "state", None), "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
