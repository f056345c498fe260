"""The broker restarted under a hop in flight: the worker survives, reconnects, keeps consuming.

Issue 20, fault 1: a Redis restart while a worker was mid-hop stopped that worker for good with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")``, kombu
5.7.0's Redis transport closing a channel twice (see ``infrabot._redis_broker``). It needs a
BRPOP in flight when Redis goes, so the worker runs two pool processes: one holds the stalled
hop, the consumer polls for the second slot. Without the fix this test failed in 2 of 2 runs.
While the broker is down the worker tries it every second (``infrabot._consumer``).

Redis only: the machine's RabbitMQ is shared and is not restarted by the tests (a RabbitMQ
broker keeps durable queues and persistent messages across its restarts; docs/reliability.md).
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from e2e._harness import RUN_TIMEOUT, accepted_run_id, deployment
from kombu import Connection, Queue
from kombu.message import Message

from bench._procs import Proc
from infrabot._consumer import RECONNECT_INTERVAL
from infrabot._redis_broker import Transport
from reliability._checks import wait_all_terminal
from reliability._faultproxy import FaultProxy, Rule
from reliability._system import FaultyDistributed
from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis
CREATE_TAGS = "/ec2/CreateTags"
DEADLINE = 15
CONNECTED = "Connected to "
RETRYING = "consumer: cannot connect to "


def wait_for_output(output: Callable[[], str], text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while output().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not seen {count} times"
        time.sleep(0.1)


@contextmanager
def a_hop_held_mid_call(d: FaultyDistributed) -> Iterator[tuple[Rule, Proc, str]]:
    """``serve`` and a worker with two pool slots started, a deployment run sent, and its
    ArgoCD hop held mid-call by the proxy the worker goes through: (the held call, the worker,
    the run). With two slots the consumer has a BRPOP in flight while the hop runs."""
    d.serve()
    with FaultProxy() as proxy:
        stall = proxy.stall(CREATE_TAGS)
        worker = d.worker(HTTP_PROXY=proxy.url, concurrency=2)
        in_flight = accepted_run_id(d.webhook(deployment("sam")))
        assert stall.stalled.wait(RUN_TIMEOUT), d.logs()
        yield stall, worker, in_flight


def test_redis_restart_under_a_hop_in_flight_keeps_the_worker(
        faulty: FaultyDistributed, own_redis: RedisServer) -> None:
    d = faulty
    d.redis_url = own_redis.url(0)
    d.extra_env = {"INFRABOT_RUN_DEADLINE_SECONDS": str(DEADLINE)}
    with a_hop_held_mid_call(d) as (stall, worker, in_flight):
        own_redis.stop(signal.SIGKILL)  # a crash: Redis kept nothing
        stall.release()  # the hop goes on without its broker
        # The consumer tries its broker every second (infrabot._consumer), not Celery's
        # 2, 4, 6 ... 30 s, which made a broker back after 8 s usable only after 12 s.
        wait_for_output(worker.output, RETRYING, 2, timeout=30)
        own_redis.start()

        wait_for_output(worker.output, CONNECTED, 2, timeout=30)  # reconnected
        after = accepted_run_id(d.webhook(deployment("sam")))
        runs = wait_all_terminal(d, [in_flight, after], timeout=DEADLINE + 30)

    assert worker.alive(), d.logs()
    assert "Unrecoverable error" not in worker.output()
    intervals = [float(m) for m in re.findall(r"trying again in ([0-9.]+) s", worker.output())]
    assert len(intervals) >= 2 and max(intervals) <= RECONNECT_INTERVAL, intervals
    assert "Trying again in" not in worker.output()  # Celery's own, growing, schedule
    # The same worker process consumed the run sent after the restart.
    assert (runs[after].status, runs[after].reason) == ("succeeded", "ok"), d.logs()
    # The hop in flight lost its message with the unpersisted Redis: its run still ended.
    # (An append-only Redis keeps it, and the run succeeds: test_broker_restart_aof.py.) Or its
    # hand-off went out once Redis was back (a publish rides out a few seconds): the Redis is
    # the registry too, and a registry that kept nothing refuses every token of before it
    # (registry_reset, docs/design.md section 4), so the next agent's exchange is denied so.
    ended = runs[in_flight]
    assert ended.status in ("succeeded", "failed") or (
        ended.status == "denied" and (ended.reason or "").endswith("(registry_reset)")), ended


def test_a_channel_left_without_its_connection_raises_a_connection_error(
        own_redis: RedisServer) -> None:
    """The state the worker reached: a message received on a channel whose pools were dropped
    and whose transport was detached. Acknowledging it must fail as a connection error (which
    Celery logs and survives), never as AttributeError (which stopped the worker)."""
    connection = Connection(own_redis.url(0), transport=Transport)
    message = received_with_a_brpop_in_flight(connection)
    channel = message.channel
    own_redis.stop(signal.SIGKILL)
    connection.collect(socket_timeout=0.1)
    connection.close()
    channel._disconnect_pools()
    with pytest.raises(connection.connection_errors):
        message.reject(requeue=False)


def received_with_a_brpop_in_flight(connection: Connection, name: str = "t") -> Message:
    """A message published to queue ``name`` and received, then a BRPOP for the next in
    flight (the consumer polls for its second pool slot)."""
    queue = Queue(name)
    with connection.Producer() as producer:
        producer.publish({"hop": 1}, routing_key=name, declare=[queue])
    received: list[Message] = []
    consumer = connection.Consumer(queue, callbacks=[lambda _, m: received.append(m)])
    consumer.consume()
    connection.drain_events(timeout=2)
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=0.2)  # a BRPOP in flight
    [message] = received
    return message
