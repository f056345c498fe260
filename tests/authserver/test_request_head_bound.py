"""A request's head (request line and headers) is bounded whichever parser uvicorn runs: h11
refuses a head still incomplete past 16 KiB; httptools, which has no limit of its own, runs with
:data:`orchestrator._servers.MAX_HEAD_BYTES`. A head over the bound is answered 400 (or the
connection is closed first) and the server goes on serving."""

from __future__ import annotations

import inspect
import socket
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from orchestrator._servers import HTTP_PROTOCOL, MAX_HEAD_BYTES

from .conftest import AuthServer


def send_head(port: int, padding: int, *, piece: int = 1024, pause: float = 0.0) -> bytes:
    """``GET /health`` whose head carries ``padding`` bytes in one header, sent ``piece`` bytes
    per write; the answer's head, or ``b""`` if the server closed or reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ")
            for start in range(0, padding, piece):
                conn.sendall(b"a" * min(piece, padding - start))
                time.sleep(pause)
            conn.sendall(b"\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply and (data := conn.recv(4096)):
                reply += data
        except (BrokenPipeError, ConnectionResetError):  # the server refused and closed
            return b""
    return reply


def test_a_head_over_the_bound_is_refused(server: AuthServer) -> None:
    reply = send_head(server.settings.auth_port, 1024 * 1024, piece=8192)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:80]
    assert server.http.get(f"{server.url}/health").json() == {"status": "ok"}


def test_a_head_arriving_in_pieces_within_the_bound_is_served(server: AuthServer) -> None:
    reply = send_head(server.settings.auth_port, 12 * 1024, pause=0.001)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:80]


def test_the_bound_applies_to_each_request_of_a_connection(server: AuthServer) -> None:
    """Heads that together exceed the bound, on one keep-alive connection, are each served."""
    count = MAX_HEAD_BYTES // 1024 + 20
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 1024 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.settings.auth_port), timeout=10) as conn:
        for _ in range(count):
            conn.sendall(request)
            reply = b""
            while b'"ok"}' not in reply and (data := conn.recv(4096)):
                reply += data
            assert reply.startswith(b"HTTP/1.1 200"), reply[:80]


def test_httptools_serves_a_head_with_the_largest_token_the_settings_allow(
        server: AuthServer) -> None:
    """h11 refuses it (16 KiB); with httptools the bound leaves room for a 64 KiB token."""
    pytest.importorskip("httptools")
    assert not isinstance(HTTP_PROTOCOL, str)
    reply = send_head(server.settings.auth_port, 64 * 1024 + 1024, pause=0.0005)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:80]


def test_uvicorn_is_capped_because_the_bound_subclasses_its_private_protocol() -> None:
    """Why ``pyproject.toml`` caps uvicorn below its next minor release.

    uvicorn has no public setting that bounds a request head under httptools
    (``h11_max_incomplete_event_size`` is h11's alone), so ``BoundedHttpTools`` subclasses the
    private ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`` and overrides three of its
    callbacks. A new release may rename or reorder them and the bound would silently go. Everything
    else ``_servers.py`` uses is public (``Config``, ``Server``, ``serve(sockets=...)``,
    ``started``, ``should_exit``). To raise the cap: install the new release, run this file's
    tests, read the protocol's diff, then move the cap and ``tested`` below together.
    """
    tested = "0.55"
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    [uvicorn] = [Requirement(r) for r in project["project"]["dependencies"]
                 if Requirement(r).name == "uvicorn"]
    assert f"{tested}.99" in uvicorn.specifier and f"{tested}.0" in uvicorn.specifier
    assert not uvicorn.specifier.contains(f"0.{int(tested[2:]) + 1}.0")
    assert version("uvicorn").startswith(f"{tested}."), "a new uvicorn: see this docstring"
    httptools_impl = pytest.importorskip("uvicorn.protocols.http.httptools_impl")
    protocol = httptools_impl.HttpToolsProtocol
    for name, params in (("on_message_begin", ["self"]), ("on_headers_complete", ["self"]),
                         ("data_received", ["self", "data"]),
                         ("send_400_response", ["self", "msg"])):
        assert list(inspect.signature(getattr(protocol, name)).parameters) == params, name
    init = inspect.getsource(protocol.__init__) + inspect.getsource(protocol.connection_made)
    assert "self.logger =" in init and "self.transport =" in init
