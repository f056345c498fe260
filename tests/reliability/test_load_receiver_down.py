"""``infrabot simulate load`` keeps going while the webhook receiver is down part-way.

A real ``infrabot serve`` is SIGKILLed (its whole process group) mid-load and started again on
the same ports a few seconds later. The load run retries each send a bounded number of times,
counts the events it could not deliver, goes on with the rest once the receiver is back, prints
its report (every event in exactly one count) and exits non-zero because some were lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from e2e._harness import INFRABOT

from orchestrator._words import plural
from reliability._system import FaultyDistributed
from tests._ports import free_port_base, serve_port_count

pytestmark = pytest.mark.redis
COUNT = 40
RATE = 8.0


def restart_serve_on_the_same_ports(d: FaultyDistributed, port_base: int,
                                   down_seconds: float) -> None:
    serve = next(p for p in d.procs if p.name == "serve" and p.alive())
    os.killpg(serve.pid, signal.SIGKILL)
    serve.popen.wait(10)
    before = d.endpoints
    (d.state_dir / "endpoints.json").unlink()
    time.sleep(down_seconds)
    assert d.serve(port_base=port_base) == before


def wait_for_runs(d: FaultyDistributed, count: int, load: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    with d.runs() as store:
        while len(store.list(limit=count)) < count:
            assert load.poll() is None and time.monotonic() < deadline, load.communicate()
            time.sleep(0.05)


def test_load_survives_the_receiver_going_down_and_reports_what_was_lost(
        faulty: FaultyDistributed, reliability_redis_url: str) -> None:
    d = faulty
    d.redis_url = reliability_redis_url
    base = free_port_base(serve_port_count(d.workflows_dir))  # none taken while it is down
    d.serve(port_base=base)
    d.worker(concurrency=2)
    load = subprocess.Popen(
        [str(INFRABOT), "simulate", "load", "--count", str(COUNT), "--rate", str(RATE),
         "--bad-ratio", "0", "--timeout", "120", "--json"],
        env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_runs(d, 10, load)  # some events sent and accepted
        restart_serve_on_the_same_ports(d, base, down_seconds=4.0)
        stdout, stderr = load.communicate(timeout=180)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()

    assert stdout, stderr
    report = json.loads(stdout)
    lost = report["lost"]
    print(f"\nload with the receiver down 4 s: {report['accepted']} accepted, lost {lost}, "
          f"{report['retries']} sends retried, statuses {report['statuses']}")
    assert load.returncode == 1, (stdout, stderr)
    assert report["sent"] == COUNT
    assert report["accepted"] + sum(report["refused"].values()) + sum(lost.values()) == COUNT
    assert lost and set(lost) <= {"connection_error (ConnectError)",
                                  "connection_error (RemoteProtocolError)",
                                  "connection_error (ReadError)",
                                  "answer_lost (replayed_delivery on retry)"}, lost
    assert report["retries"] >= 3 * sum(lost.values())  # each lost event was tried 4 times
    assert report["accepted"] > 20  # it went on after the receiver came back
    assert sum(report["statuses"].values()) + report["unfinished"] == report["accepted"]
    assert stderr.strip().splitlines()[-1].startswith(
        f"Error: {plural(sum(lost.values()), 'event')} lost: connection_error"), stderr
