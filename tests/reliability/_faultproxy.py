"""A small real HTTP forward proxy on loopback that injects faults on chosen paths.

Agents reach it the way clients reach any forward proxy: by absolute-form requests
(``POST http://127.0.0.1:43665/ec2/CreateTags HTTP/1.1``), which is what an httpx client sends
when it is routed through a proxy (``HTTP_PROXY`` for a worker process, a mounted proxy
transport for the embedded runtime). Every request is forwarded unchanged to the real service,
except where a :class:`Rule` says otherwise:

* ``fail``: the first N requests to a path are answered with ``status`` (503) by the proxy
  itself; the service never sees them.
* ``stall``: the first N requests to a path are forwarded (the service acts on them), then the
  answer is held until :meth:`Rule.release` or the hold times out: the client is left hanging
  mid-call, after the side effect, which is where a killed worker hurts most. With
  ``then_drop`` the held answer is never given: the connection is closed instead (a server
  that acted, then died before answering); it is recorded with the status the service gave.
  ``skip`` lets that many matching requests pass first (the third ``/token`` request, not the
  first); ``client`` matches only the form requests of that OAuth client (their ``client_id``),
  so a rule can name one agent's exchanges while branches run in either order.
* ``drop``: the connection is closed without an answer (the service never sees the request):
  what a client sees of a server that died mid-request.

The proxy records what it saw (:attr:`FaultProxy.seen`), so a test can tell which answers were
faked. Use it as a context manager; it stops its server thread on exit.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self
from urllib.parse import SplitResult, parse_qs, urlsplit

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                        "content-length"})
Kind = Literal["fail", "stall", "drop"]


@dataclass
class Rule:
    kind: Kind
    path: str
    times: int
    status: int = 503
    hold_seconds: float = 30.0
    hits: int = 0
    skip: int = 0
    client: str | None = None  # only form requests whose client_id is this
    then_drop: bool = False
    stalled: threading.Event = field(default_factory=threading.Event)
    stalled_client: tuple[str, int] | None = None
    _released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._released.set()

    def claim(self, path: str, body: bytes) -> bool:
        """True if this request is one the rule applies to (counted)."""
        if path != self.path or self.hits >= self.times:
            return False
        if self.client is not None and \
                parse_qs(body.decode("latin-1")).get("client_id") != [self.client]:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.hits += 1
        return True


@dataclass(frozen=True)
class Seen:
    method: str
    url: str
    status: int  # 0: dropped without an answer
    faked: bool  # answered by the proxy, not by the service
    request_id: str | None = None  # the request's X-Request-Id (an agent's call key)
    stalled: bool = False  # forwarded, then its answer held by a ``stall`` rule


class FaultProxy:
    """A forward proxy on ``127.0.0.1:<port>``; :attr:`url` is what clients configure."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, path: str, times: int, status: int = 503) -> Rule:
        return self._add(Rule("fail", path, times, status=status))

    def stall(self, path: str, times: int = 1, hold_seconds: float = 30.0, *, skip: int = 0,
              client: str | None = None, then_drop: bool = False) -> Rule:
        return self._add(Rule("stall", path, times, hold_seconds=hold_seconds, skip=skip,
                              client=client, then_drop=then_drop))

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def rule_for(self, path: str, body: bytes = b"") -> Rule | None:
        with self._lock:
            return next((r for r in self.rules if r.claim(path, body)), None)

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def answered(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if urlsplit(s.url).path == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for rule in self.rules:
            rule.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._proxy()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        def _proxy(self) -> None:
            target = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if target.scheme != "http" or not target.hostname:
                self._answer(400, [], b"forward proxy: absolute http URL required", True)
                return
            rule = proxy.rule_for(target.path, body)
            if rule is not None and rule.kind == "drop":
                proxy.record(Seen(self.command, self.path, 0, True,
                                  self.headers.get("X-Request-Id")))
                self.close_connection = True
                return
            if rule is not None and rule.kind == "fail":
                payload = b'{"error":"temporarily_unavailable","reason":"injected_fault"}'
                self._answer(rule.status, [("Content-Type", "application/json")], payload, True)
                return
            status, headers, payload = self._forward(target, body)
            if rule is not None:  # a stall: the service acted; hold the answer
                rule.stalled_client = self.client_address[:2]
                rule.stalled.set()
                rule._released.wait(rule.hold_seconds)
                if rule.then_drop:  # recorded as the service answered; the client never is
                    proxy.record(Seen(self.command, self.path, status, False,
                                      self.headers.get("X-Request-Id"), stalled=True))
                    self.close_connection = True
                    return
            self._answer(status, headers, payload, False, stalled=rule is not None)

        def _forward(self, target: SplitResult,
                     body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            path = target.path + (f"?{target.query}" if target.query else "")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(target.hostname or "", target.port or 80,
                                              timeout=30)
            try:
                conn.request(self.command, path or "/", body=body or None, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                return response.status, kept, payload
            finally:
                conn.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes,
                    faked: bool, stalled: bool = False) -> None:
            proxy.record(Seen(self.command, self.path, status, faked,
                              self.headers.get("X-Request-Id"), stalled))
            try:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except OSError:  # the client went away (a killed worker): nothing to answer
                self.close_connection = True

    return Handler
