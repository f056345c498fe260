"""Requests sent by hand on a raw loopback socket, for what an HTTP client will not send: a head
that declares more body than follows, a client that goes away mid-body.

``reply_to(address, head + b"abc")`` is the raw reply, read until a JSON answer has come whole;
``abandon(address, head + b"abc")`` sends and closes the connection without reading.
"""

from __future__ import annotations

import socket
import time

import pytest

Address = tuple[str, int]


def reply_to(address: Address, request: bytes, *, wait: float = 5.0) -> bytes:
    """The raw reply (head and body) to ``request`` sent on a new connection, read until a JSON
    body has come whole (a head, then bytes ending ``}``) or the server closes; the test fails
    when nothing arrives for ``wait`` seconds (the server never answered)."""
    reply = b""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(request)
        conn.settimeout(wait)
        try:
            while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            pytest.fail("no answer: the body read has no deadline")
    return reply


def abandon(address: Address, request: bytes, *, linger: float = 0.0) -> None:
    """Send ``request`` on a new connection and close it ``linger`` seconds later, unread."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(request)
        time.sleep(linger)
