"""A TCP proxy in front of the test PostgreSQL server that can hold one reply back, so a test
decides what a client reads at once: the reply to a transaction's ``COMMIT`` together with the
server's goodbye after its backend was killed (what a busy machine does now and then).

That one connection's hang-up is then passed on only when the client sends something again, so
its socket stays quiet, as it does between the goodbye and the hang-up; every other connection
is passed on as it is.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests._postgres import server_url

# ReadyForQuery, idle: the end of the reply to a transaction's COMMIT.
_IDLE = b"Z\x00\x00\x00\x05I"
# BackendKeyData, sent once at the start: the backend's pid follows.
_KEY = b"K\x00\x00\x00\x0c"


class _Link:
    """One client connection and its server connection."""

    def __init__(self, proxy: Proxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        for sock in (client, server):  # as PostgreSQL does: a goodbye is not held back (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.watched = False  # it sent the COMMIT whose reply is to be held
        self.held: bytearray | None = None  # the reply held back, and all that came after
        self.spoke = False  # the client sent something since its reply was held
        self.ended = threading.Event()  # the server hung up
        self.pid: int | None = None  # the backend's

    def upstream(self) -> None:
        with suppress(OSError):
            while data := self.client.recv(65536):
                with self.lock:
                    if self.ended.is_set():
                        break  # sent after the server hung up: now the client learns it
                    self.spoke = True
                    if b"COMMIT" in data and self.proxy.disarm():
                        self.watched = True
                    self.server.sendall(data)
        self.close()

    def downstream(self) -> None:
        with suppress(OSError):
            while data := self.server.recv(65536):
                if self.pid is None and (at := data.find(_KEY)) >= 0:
                    self.pid = int.from_bytes(data[at + 5:at + 9], "big")
                with self.lock:
                    if self.held is None and not (self.watched and data.endswith(_IDLE)):
                        self.client.sendall(data)
                        continue
                    if self.held is None:
                        self.held, self.spoke = bytearray(), False
                        self.proxy.holding.set()
                    self.held += data
        with self.lock:
            if self.held is None or self.spoke:  # the client is waiting: it learns it now
                self.close()
            self.ended.set()

    def close(self) -> None:
        for sock in (self.client, self.server):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a close alone waits for the other thread's recv
            sock.close()


class Proxy:
    def __init__(self, server: tuple[str, int]) -> None:
        self._server = server
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._armed = False
        self.holding = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` through the proxy."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        port = self._listener.getsockname()[1]
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}".lstrip("@")))

    def hold_next_commit_reply(self) -> None:
        """Hold back the reply to the next ``COMMIT`` a client sends, and all that follows it on
        that connection, until :meth:`release`."""
        with self._lock:
            self._armed = True

    def disarm(self) -> bool:
        """Whether it was armed (it is not any more)."""
        with self._lock:
            armed, self._armed = self._armed, False
        return armed

    def release(self, timeout: float = 30) -> None:
        """Once every connection whose backend is gone has passed on its goodbye and hang-up
        (all but the one held), pass on what was held, in one piece."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(server_url(), autocommit=True) as admin:
            alive = {pid for (pid,) in admin.execute("SELECT pid FROM pg_stat_activity")}
        for link in list(self._links):
            if link.pid is not None and link.pid not in alive:
                assert link.ended.wait(deadline - time.monotonic()), "a server did not hang up"
        held = next(link for link in self._links if link.held is not None)
        with held.lock:
            held.client.sendall(bytes(held.held or b""))

    def close(self) -> None:
        self._listener.close()
        for link in self._links:
            link.close()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                link = _Link(self, client, socket.create_connection(self._server))
                self._links.append(link)
                threading.Thread(target=link.upstream, daemon=True).start()
                threading.Thread(target=link.downstream, daemon=True).start()


@contextmanager
def proxy(url: str) -> Iterator[Proxy]:
    parts = urlsplit(url)
    running = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield running
    finally:
        running.close()
