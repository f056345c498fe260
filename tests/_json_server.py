"""A stand-in HTTP server on loopback for tests that need something answering JSON (a webhook
receiver whose answers the test scripts): :func:`json_server` runs a handler class in a thread,
:func:`answer` writes one JSON answer."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (subclass it with ``do_GET``/``do_POST``)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    """``body`` as a JSON answer with ``status``."""
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


@contextlib.contextmanager
def json_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on 127.0.0.1 (a port the OS picks) until the block ends: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
