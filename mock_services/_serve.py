"""Serve an ASGI app with uvicorn on loopback in a background thread (tests, embedded mode).

Bind first, then build the app: :func:`reserve` binds a socket (port 0 picks a free one), so the
bound URL is known before the app that needs it as its audience is created, with no race for the
port. :func:`serve_in_thread` serves an app on such a socket, or binds ``host:port`` itself, and
returns the base URL and a ``stop`` function that shuts the server down and joins its thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp

from orchestrator._servers import HTTP_PROTOCOL

START_TIMEOUT_SECONDS = 10.0


def reserve(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port``; its port is ``getsockname()[1]``."""
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then (without
    # it, keep-alive answers stall ~40 ms on Nagle + delayed ACK). uvloop sets it on every TCP
    # connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def close_app(app: ASGIApp) -> None:
    """Run a stopped app's ``state.close`` if it has one (a service writes its open anonymous
    counts to the audit trail; a second call writes nothing more)."""
    close = getattr(getattr(app, "state", None), "close", None)
    if callable(close):
        close()


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *,
                    sock: socket.socket | None = None) -> tuple[str, Callable[[], None]]:
    """Start ``app``; returns ``(base_url, stop)``. ``stop`` is idempotent."""
    sock = sock if sock is not None else reserve(host, port)
    url = url_of(sock)
    # As `infrabot serve` runs: httptools (with a bound on the head) and uvloop when installed,
    # h11 and asyncio's loop otherwise.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none",
                            http=HTTP_PROTOCOL, loop="auto", access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"uvicorn {url}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError(f"server for {url} did not start")
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()
        close_app(app)

    return url, stop
