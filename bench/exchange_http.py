"""Part of benchmark 1 (exchange): token exchanges over HTTP against a real ``infrabot serve`` on
loopback (Redis registry, SQLite audit), and what each costs the server's CPU.

Concurrent clients (threads, one ``httpx.Client`` each, every request with its own prebuilt
form) post exchanges in a burst; the serve process's user + system CPU time is read from
``/proc`` before and after, and divided by the exchanges answered. Beside it: the crypto floor
of one exchange (2 ES256 verifies + 1 sign, done raw with ``cryptography`` on the same tokens, in
this process), and the same server's CPU per ``GET`` of its metadata, the cheapest request it
serves (what the HTTP edge alone costs). Served as shipped (tracing on), and once with tracing
off (its cost is the tracing benchmark's subject).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench._cluster import Cluster, flush
from bench._inproc import WORKFLOW_SCOPES, RawJWS, context
from bench._procs import cpu_seconds
from bench._report import Table, ratio, us
from infrabot.stack import ORCHESTRATOR_CLIENT, provision_clients
from orchestrator.authserver import open_registry
from orchestrator.authserver._service import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS
from orchestrator.client import AuthClient
from orchestrator.identity import CLIENT_ASSERTION_TYPE, make_assertion
from orchestrator.keystore import client_key

AGENT = "agent:infrabot"
SCOPE = "urn:infra:monitoring:read"
GOAL_CPU = 3.0  # the server's CPU per exchange, at most this times the crypto floor
GOAL_RATE = 1500  # exchanges/s with 4 clients
STACK_FLOOR = "stack floor (crypto only)"
# The stack floor's other forms (bench/_stack_floor.py): the row's name, its mode
FLOOR_FORMS = (("stack floor, no thread hop", "loop"), ("HTTP edge only (empty route)", "edge"))
SETUPS: tuple[tuple[str, dict[str, str]], ...] = (("as served", {}), ("tracing off", {"INFRABOT_TRACING": "false"}))


def drive(calls: list[list[Callable[[httpx.Client], bool]]],
          timeout: float) -> tuple[float, int, int]:
    """One thread per list of calls, each with its own client; (seconds, ok, failed)."""
    ok = [0] * len(calls)
    failed = [0] * len(calls)
    barrier = threading.Barrier(len(calls) + 1)
    deadline = time.monotonic() + timeout

    def worker(index: int) -> None:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            try:
                calls[index][0](http)  # connect and warm up before the start line
            except BaseException:
                barrier.abort()  # the burst fails at the start line instead of waiting forever
                raise
            barrier.wait()
            for call in calls[index][1:]:
                if time.monotonic() > deadline:
                    break
                if call(http):
                    ok[index] += 1
                else:
                    failed[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, sum(ok), sum(failed)


def _burst(pid: int, calls: list[list[Callable[[httpx.Client], bool]]],
           timeout: float) -> tuple[float, int, int, float]:
    """``drive`` with the serve process's CPU seconds used while it ran."""
    before = cpu_seconds(pid)
    seconds, ok, failed = drive(calls, timeout)
    return seconds, ok, failed, cpu_seconds(pid) - before


def over_http(root: Path, redis_url: str, *, requests: int, clients: tuple[int, ...],
              rates: dict[int, float] | None = None) -> Table:
    """The HTTP table; ``rates`` (if given) receives the exchanges/s per client count, as
    served."""
    table = Table("Exchange over HTTP: infrabot serve on loopback (Redis registry, SQLite "
                  "audit), concurrent clients; the server's CPU from /proc",
                  ["server", "clients", "exchanges/s", "failed", "server CPU per exchange",
                   "crypto floor", "CPU / floor", "GET metadata req/s", "server CPU per GET"])
    floor = 0.0
    for name, env in SETUPS:
        counts = clients if not env else tuple(c for c in clients if c == 4) or clients[:1]
        # Unbound tokens, as this table's baseline always measured: bench/dpop.py measures
        # what DPoP binding adds to a run.
        with Cluster(root / name.replace(" ", "-"), redis_url,
                     extra_env={"INFRABOT_DPOP_BINDING": "false", **env}) as cluster:
            flush(redis_url)
            cluster.state_dir.mkdir(parents=True, exist_ok=True)
            cluster.serve()
            post, get, floor_op = _endpoints(cluster)
            if not floor:
                floor = _cpu_floor(floor_op)
            assert cluster.serve_proc is not None
            pid = cluster.serve_proc.pid
            for count in counts:
                per = max(1, requests // count)
                seconds, ok, failed, cpu = _burst(
                    pid, [[post() for _ in range(per + 1)] for _ in range(count)], 120)
                meta_seconds, meta_ok, _, meta_cpu = _burst(
                    pid, [[get] * (per + 1) for _ in range(count)], 60)
                rate = ok / seconds
                if rates is not None and not env:
                    rates[count] = rate
                per_exchange = 1e6 * cpu / max(ok, 1)
                table.add(name, count, f"{rate:,.0f}", failed, us(per_exchange), us(floor),
                          ratio(per_exchange, floor), f"{meta_ok / meta_seconds:,.0f}",
                          us(1e6 * meta_cpu / max(meta_ok, 1)))
            if not env:  # the stack's own lower bound, beside the served rows, same keys
                for count in (4 if 4 in counts else max(counts),):
                    rate, failed, per_exchange = _stack_floor(cluster, post, requests // count,
                                                              count)
                    table.add(STACK_FLOOR, count, f"{rate:,.0f}", failed, us(per_exchange),
                              us(floor), ratio(per_exchange, floor), "", "")
                    for row, mode in FLOOR_FORMS:
                        rate, failed, per_exchange = _stack_floor(
                            cluster, post, requests // count, count, mode=mode)
                        table.add(row, count, f"{rate:,.0f}", failed, us(per_exchange),
                                  us(floor), ratio(per_exchange, floor), "", "")
    table.notes += [
        (f"{requests} requests per row split across the clients (each with its own prebuilt "
        "form and connection); the server and the clients share the machine's 2 cores."),
        ("Each exchange: parse, client authentication (assertion), subject verification with "
        "the replay claim and the revocation check in one Redis round trip, decide, sign, "
        "SQLite audit record."),
        (f"{STACK_FLOOR}: the same stack (uvicorn, uvloop, httptools, the form read as /token "
        "reads it, a plain Starlette route, one thread-pool hop) serving a /token that does only "
        "the exchange's cryptography through the identity API (client assertion and subject "
        "token verified, a token signed): no Redis, no audit, no decision (bench/_stack_floor.py). "
        "What the served exchange could cost on this stack if everything else were free. "
        f"{FLOOR_FORMS[0][0]}: the same with the cryptography run on the event loop (what an "
        "exchange whose every wait were awaited, not blocked on in a thread, could cost). "
        f"{FLOOR_FORMS[1][0]}: the same stack answering the form with a fixed body (what the "
        "HTTP edge alone costs a form POST)."),
        ("Server CPU: user + system time of the serve process (/proc/PID/stat) over the burst, "
        "divided by the requests answered. Crypto floor: raw ES256 verify of the subject token "
        "and of the client assertion and one raw sign, in this process, each its CPU time "
        f"(median of 5 rounds x 300). Goals: CPU within {GOAL_CPU:g}x the floor, and "
        f"{GOAL_RATE:,} exchanges/s with 4 clients."),
    ]
    return table


def _stack_floor(cluster: Cluster, post: Callable[..., Callable[[httpx.Client], bool]],
                 per: int, count: int, *, mode: str = "hop") -> tuple[float, int, float]:
    """(exchanges/s, failed, server CPU µs per request) of ``bench._stack_floor`` in ``mode``
    started on ``cluster``'s state (its keys, issuer and token endpoint URL)."""
    url_file = cluster.root / "stack-floor.url"
    url_file.unlink(missing_ok=True)  # the last floor's, on a port no longer served
    auth_port = cluster.endpoints["auth"].rsplit(":", 1)[1]
    proc = cluster.procs.start("stack-floor", [sys.executable, "-m", "bench._stack_floor"], {
        **cluster.env(), "INFRABOT_AUTH_PORT": auth_port,
        "INFRABOT_BENCH_FLOOR_FILE": str(url_file), "INFRABOT_BENCH_FLOOR_MODE": mode})
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists():
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the stack floor did not start:\n{proc.output()[-3000:]}")
            time.sleep(0.05)
        url = f"{url_file.read_text()}/token"
        seconds, ok, failed, cpu = _burst(
            proc.pid, [[post(url) for _ in range(per + 1)] for _ in range(count)], 120)
    finally:
        cluster.procs.stop(proc)
    return ok / seconds, failed, 1e6 * cpu / max(ok, 1)


def _cpu_floor(ops: dict[str, Callable[[int], object]], calls: int = 300,
               rounds: int = 5) -> float:
    """The sum of each op's CPU time per call (this thread's, median of ``rounds``): CPU time,
    as the server's is, so a machine busy with other work inflates neither."""
    per_op = []
    for op in ops.values():
        samples = []
        for _ in range(rounds):
            start = time.thread_time()
            for i in range(calls):
                op(i)
            samples.append((time.thread_time() - start) / calls)
        per_op.append(statistics.median(samples))
    return 1e6 * sum(per_op)


def _endpoints(cluster: Cluster) -> tuple[Callable[..., Callable[[httpx.Client], bool]],
                                          Callable[[httpx.Client], bool],
                                          dict[str, Callable[[int], object]]]:
    """A maker of exchange calls (each with a fresh assertion), the metadata GET, and the raw
    crypto operations of one exchange on this cluster's real tokens."""
    s = cluster.settings
    auth_url = cluster.endpoints["auth"]
    token_url = f"{auth_url}/token"
    orch_key = client_key(s.keys_dir / "clients", ORCHESTRATOR_CLIENT, s.signing_alg)
    with AuthClient(auth_url, ORCHESTRATOR_CLIENT, orch_key) as auth:
        root_tok = auth.root_token("user:sam", WORKFLOW_SCOPES, context(), AGENT)["access_token"]
    # what `infrabot keys init` + `keys register` do for the agent (serve makes no agent key)
    [key] = provision_clients(s, open_registry(s), [AGENT]).values()
    target = {"resource": cluster.endpoints["datadog"], "scope": SCOPE}
    headers = {"content-type": "application/x-www-form-urlencoded"}

    def form() -> bytes:
        a = make_assertion(key, issuer=AGENT, subject=AGENT, audience=token_url,
                           now=int(time.time()))
        return urlencode({"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": root_tok,
                          "subject_token_type": TOKEN_TYPE_ACCESS, **target,
                          "client_assertion_type": CLIENT_ASSERTION_TYPE,
                          "client_assertion": a, "client_id": AGENT}).encode()

    def post(url: str = token_url) -> Callable[[httpx.Client], bool]:
        content = form()
        return lambda http: http.post(url, content=content, headers=headers).status_code == 200

    def get(http: httpx.Client) -> bool:
        return http.get(f"{auth_url}/.well-known/oauth-authorization-server").status_code == 200

    kid = jwt.get_unverified_header(root_tok)["kid"]
    jwks = httpx.get(f"{auth_url}/jwks.json", trust_env=False).json()["keys"]
    server_public = jwt.PyJWK(next(k for k in jwks if k["kid"] == kid)).key
    assertion = make_assertion(key, issuer=AGENT, subject=AGENT, audience=token_url,
                               now=int(time.time()))
    subject = RawJWS(root_tok, server_public)
    signed = RawJWS(assertion, key.public.key)  # type: ignore[arg-type]
    sign = ec.generate_private_key(ec.SECP256R1())
    floor: dict[str, Callable[[int], object]] = {"verify subject": subject.verify, "verify assertion": signed.verify,
             "sign": lambda _i: sign.sign(subject.signing_input, ec.ECDSA(hashes.SHA256()))}
    return post, get, floor
