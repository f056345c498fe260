"""A hop that Redis handed to a worker which died (or lost Redis) before recording it as
unacknowledged: redelivered within the visibility timeout plus 15 s, not lost.

Kombu's Redis transport records a message as unacknowledged only after the worker's ``BRPOP``
took it. Between the two the hop exists only in the reply on its way to the worker: for as long
as the worker waits to be scheduled, tens of milliseconds on a loaded machine, where the chaos
benchmark's worker kills lost 5 runs of 200 and a broker restart 1 of 50. The tests make that
window as long as they need by stopping the idle worker (SIGSTOP, the whole process group: it is
not scheduled) while its BRPOP waits, then sending a run: Redis pops the first hop into the
stopped worker's socket. With kombu's own transport the hop was then in no queue and no unacked
record, and both tests failed (the run never ended); ``infrabot._redis_broker`` records it
with its publication.

Redis only: RabbitMQ records a delivery before sending it (tests/reliability/test_worker_lost.py
covers it).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from e2e._harness import accepted_run_id, deployment, events_of, first_time_counts

from orchestrator.config import VISIBILITY_MARGIN
from reliability._system import FaultyDistributed
from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis
HOP_TIME_LIMIT = 15  # every hop here runs in a second or two
VISIBILITY = HOP_TIME_LIMIT + VISIBILITY_MARGIN  # the least that limit allows: 26 s
BOUND = VISIBILITY + 15


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """The broker, with an append-only file synced on every write (as the benchmark's)."""
    server = RedisServer(tmp_path / "broker", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def blocked_in_brpop(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list()
               if c.get("cmd") == "brpop" and "b" in c.get("flags", ""))


def hand_a_hop_to_a_stopped_worker(d: FaultyDistributed, broker: RedisServer) -> tuple[str, int]:
    """Start ``serve`` and one idle worker, stop that worker while its BRPOP waits, send a run,
    and return once Redis has popped the first hop into the stopped worker's socket."""
    d.redis_url = broker.url(0)
    d.extra_env = {"INFRABOT_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
                   "INFRABOT_HOP_TIME_LIMIT_SECONDS": str(HOP_TIME_LIMIT)}
    d.serve()
    worker = d.worker()
    client = redis.Redis.from_url(broker.url(0))
    try:
        wait_until(lambda: blocked_in_brpop(client) == 1, "the worker waits in BRPOP")
        os.killpg(worker.pid, signal.SIGSTOP)
        run_id = accepted_run_id(d.webhook(deployment("sam")))
        wait_until(lambda: blocked_in_brpop(client) == 0 and client.llen("infrabot") == 0,
                   "Redis handed the hop to the stopped worker")
        print(f"\nthe hop popped: {client.llen('infrabot')} in its queue, "
              f"{client.hlen('unacked')} recorded as unacknowledged")
    finally:
        client.close()
    return run_id, worker.pid


def assert_ran_once(d: FaultyDistributed, run_id: str, recovered: float) -> None:
    run = d.wait_run(run_id, timeout=BOUND + 30)
    print(f"\nhop redelivered and run ended {recovered:.1f} s after the fault")
    assert (run.status, run.reason) == ("succeeded", "ok"), d.logs()
    assert len(events_of(run, "finished")) == 1
    with d.audit() as audit:
        counts = first_time_counts(audit.query())
    assert (counts["comment:post"], counts["deploy:create"]) == (1, 1)
    d.assert_logs_hold_no_token()


def test_a_hop_taken_by_a_worker_killed_before_recording_it_is_redelivered(
        faulty: FaultyDistributed, broker: RedisServer) -> None:
    d = faulty
    run_id, pid = hand_a_hop_to_a_stopped_worker(d, broker)
    os.killpg(pid, signal.SIGKILL)  # the worker and its pool, the hop unread in its socket
    killed_at = time.monotonic()
    survivor = d.worker()
    run = d.wait_run(run_id, timeout=BOUND + 30)
    recovered = time.monotonic() - killed_at
    assert run.status == "succeeded", d.logs()
    assert recovered <= BOUND, recovered
    assert survivor.alive()
    assert_ran_once(d, run_id, recovered)


def test_a_hop_on_its_way_to_a_worker_when_redis_dies_is_redelivered(
        faulty: FaultyDistributed, broker: RedisServer) -> None:
    d = faulty
    run_id, pid = hand_a_hop_to_a_stopped_worker(d, broker)
    broker.stop(signal.SIGKILL)  # Redis dies with the hop popped (the pop is in its file)
    died_at = time.monotonic()
    os.killpg(pid, signal.SIGCONT)  # the worker reads the hop; recording it fails
    time.sleep(2.0)
    broker.start()  # the same append-only file
    run = d.wait_run(run_id, timeout=BOUND + 30)
    recovered = time.monotonic() - died_at
    assert run.status == "succeeded", d.logs()
    assert recovered <= BOUND, recovered
    assert "Unrecoverable error" not in d.logs()
    assert_ran_once(d, run_id, recovered)
