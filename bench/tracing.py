"""Benchmark: what tracing costs (issue 17's goal: at most 10% more CPU per run with export on).

The whole system embedded in one process (authorization server, four services, receiver,
orchestrator, a worker), the post-deploy workflow run one after another from signed CI events,
and the process's CPU time (every thread) per run, in three configurations, each in a fresh
process of its own (instrumentation is per process, and stays once made):

* **off**: ``INFRABOT_TRACING=false``: nothing instrumented;
* **kept**: spans kept in the run log (the default without a collector);
* **otlp**: spans exported over OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``) to a receiver in
  this process that counts them (its CPU is a collector's, not the product's).

Two more rows are floors, not ways to run: what the goal could at best reach with this
instrumentation, so the cost of export is told apart from the cost of making the spans:

* **recorded, not exported**: every span made and recorded, then dropped (no processor);
* **propagation only**: ``OTEL_TRACES_SAMPLER=always_off``: every instrumentation runs and
  carries ``traceparent`` everywhere, but no span records anything (not a trace: a floor).

The configurations alternate for ``rounds`` rounds so drift of the machine hits them alike;
the median per-run CPU of each is compared with off's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench._report import Table, ms, ratio

GOAL = 1.10
MODES = ("off", "kept", "otlp", "unexported", "unsampled")
LABELS = {"unexported": "recorded, not exported (floor)",
          "unsampled": "propagation only (floor)"}
SECRET = "bench-webhook-secret-0123456789"
CHILD_TIMEOUT = 600


def _child(mode: str, runs: int, warmup: int) -> dict[str, float]:
    """One configuration in this (fresh) process: CPU seconds per run after ``warmup``."""
    # Deferred: the child imports the whole system; the parent only starts children
    import httpx
    from opentelemetry.sdk.trace.export import SpanExporter
    from pydantic import SecretStr

    from infrabot.system import running_system
    from orchestrator.ci import build_deployment_event
    from orchestrator.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            state_dir=Path(tmp) / "state", auth_port=0, datadog_port=0, github_port=0,
            aws_port=0, pagerduty_port=0, webhooks_port=0, broker_url="memory://",
            redis_url=None, webhook_secret=SecretStr(SECRET), log_level="WARNING",
            tracing=mode != "off")
        exporters: list[SpanExporter] | None = [] if mode == "unexported" else None
        with (running_system(settings, span_exporters=exporters) as system,
              httpx.Client(timeout=30) as http):
            def one() -> None:
                headers, body = build_deployment_event("sam", "service-x", "staging", "9f2c1e7",
                                                       pr=124, secret=SECRET.encode())
                answer = http.post(f"{system.webhooks_url}/webhooks/github", content=body,
                                   headers=headers)
                run = system.runtime.runs.wait(answer.json()["run_id"], timeout=60)
                if run.status != "succeeded":
                    raise RuntimeError(f"run {run.run_id} ended {run.status}: {run.reason}")

            for _ in range(warmup):
                one()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(runs):
                one()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_per_run": cpu / runs, "wall_per_run": wall / runs}


class _Receiver:
    """An OTLP/HTTP endpoint that answers 200 and counts the bytes it was sent."""

    def __init__(self) -> None:
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _spawn(mode: str, runs: int, warmup: int, otlp_url: str) -> dict[str, float]:
    env = {}
    if mode == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_url
    if mode == "unsampled":
        env["OTEL_TRACES_SAMPLER"] = "always_off"
    return _fresh(["bench.tracing", mode, str(runs), str(warmup)], env)


def _fresh(args: list[str], extra_env: dict[str, str]) -> dict[str, float]:
    """``python -m *args`` in a fresh process, without this one's INFRABOT_/OTEL_ settings;
    the figures it prints last."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFRABOT_", "OTEL_"))} | extra_env
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args}: {done.stderr.strip()[-800:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _parts_table() -> Table:
    """Where the end-to-end figure goes: each part of tracing alone, in one thread."""
    part = _fresh(["bench._tracing_parts"], {})
    table = Table("tracing: its parts one at a time, one thread (µs per operation)",
                  ["part", "µs", "baseline", "µs ", "difference"])
    plain, traced = part["httpx request"], part["httpx request, instrumented"]
    table.add("httpx request, instrumented", f"{traced:.1f}", "httpx request, bare",
              f"{plain:.1f}", f"+{traced - plain:.1f}")
    table.add("span with 9 attributes (start, end, processor)",
              f"{part['span, 9 attributes']:.1f}", "span without attributes",
              f"{part['span']:.1f}", f"+{part['span, 9 attributes'] - part['span']:.1f}")
    table.add("OTLP protobuf encoding, per span", f"{part['otlp encode']:.1f}", "-", "-", "-")
    table.add("run-log span record (record + JSON + token check), per span",
              f"{part['run-log record']:.1f}", "-", "-", "-")
    table.notes.append("process CPU time per operation in a fresh process; the httpx requests "
                       "go to a transport that answers at once (no socket), so the difference "
                       "is the instrumentation's own work per request")
    return table


def run(runs: int = 30, warmup: int = 5, rounds: int = 3) -> list[Table]:
    receiver = _Receiver()
    try:
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        wall: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(rounds):
            for mode in MODES:
                figures = _spawn(mode, runs, warmup, receiver.url)
                cpu[mode].append(figures["cpu_per_run"])
                wall[mode].append(figures["wall_per_run"])
    finally:
        receiver.close()
    off = statistics.median(cpu["off"])
    table = Table(f"tracing: CPU per post-deploy run, embedded ({rounds} rounds x {runs} runs "
                  "per configuration, each in a fresh process)",
                  ["tracing", "CPU per run (median)", "vs off", "wall per run (median)",
                   f"goal <= {GOAL:.2f}x"])
    for mode in MODES:
        median = statistics.median(cpu[mode])
        verdict = ("-" if mode in ("off", *LABELS) else
                   "met" if median <= off * GOAL else "NOT met")
        table.add(LABELS.get(mode, mode), ms(median * 1000), ratio(median, off),
                  ms(statistics.median(wall[mode]) * 1000), verdict)
    table.notes.append(f"OTLP requests received: {receiver.requests}")
    return [table, _parts_table()]


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
