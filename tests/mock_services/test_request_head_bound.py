"""A service bounds a request's head as the authorization server does (tests/authserver/
test_request_head_bound.py): a 1 MiB head is refused before any handler runs, and the service
goes on serving."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def test_a_head_over_the_bound_is_refused(stack, http):
    url = urlsplit(stack.urls["datadog"])
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        try:
            conn.sendall(b"GET /api/v1/monitor/1001 HTTP/1.1\r\nHost: x\r\nX-Padding: ")
            for _ in range(128):  # 1 MiB
                conn.sendall(b"a" * 8192)
            conn.sendall(b"\r\n\r\n")
            reply = conn.recv(4096)
        except (BrokenPipeError, ConnectionResetError):  # the service refused and closed
            reply = b""
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:80]
    assert stack.call(http, "datadog.monitor.read", {"monitor_id": 1001}).status_code == 200
