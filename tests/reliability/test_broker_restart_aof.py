"""An append-only Redis broker restarted under a hop in flight (a fan-out's branch): the hop comes
back, its run succeeds.

The worker cancels the hop it cannot acknowledge when it loses the broker. Celery's
``Request.cancel`` first records the cancellation in the result backend, which fan-outs then
kept on the same Redis, down:
that raised before the request was marked cancelled, so the pool's report of the ended hop
counted as a revocation once Redis was back: recorded for the fan-out's chord (which failed:
``TaskRevokedError('terminated')``) and acknowledged on the channel closed with the lost
connection. Kombu's closed channel still sent that acknowledgement, to the restarted Redis, and
it deleted the hop's unacknowledged record: nothing restored the hop and the run ended at its
deadline. Now no process keeps results (the cancel records nothing that can fail, so the request
is marked cancelled) and a delivery belongs to its channel (``infrabot._redis_broker``): nothing
is acknowledged, the record stays, the sweep restores the hop after the visibility timeout.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from infrabot._redis_broker import Transport
from orchestrator.config import VISIBILITY_MARGIN
from reliability._checks import wait_all_terminal
from reliability._system import FaultyDistributed
from reliability.test_broker_restart import (
    RETRYING,
    a_hop_held_mid_call,
    received_with_a_brpop_in_flight,
    wait_for_output,
)
from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis
HOP_TIME_LIMIT = 10  # the least allowed; the hops here run in a second or two
VISIBILITY = HOP_TIME_LIMIT + VISIBILITY_MARGIN  # the least that limit allows: 21 s
DEADLINE = 75  # past the visibility timeout and a sweep (every 5 s), with room for the run


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` of the test's own with an append-only file synced on every write."""
    with RedisServer(tmp_path / "aof-redis", appendonly=True) as server:
        yield server


def test_an_append_only_broker_restarted_under_a_hop_loses_nothing(
        faulty: FaultyDistributed, own_redis: RedisServer, aof_redis: RedisServer) -> None:
    d = faulty
    d.redis_url = own_redis.url(0)  # the registry, apart
    d.broker_url = aof_redis.url(0)
    d.extra_env = {"INFRABOT_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
                   "INFRABOT_HOP_TIME_LIMIT_SECONDS": str(HOP_TIME_LIMIT),
                   "INFRABOT_RUN_DEADLINE_SECONDS": str(DEADLINE)}
    with a_hop_held_mid_call(d) as (stall, worker, in_flight):  # a fan-out's branch
        aof_redis.stop(signal.SIGKILL)  # a crash: the append-only file keeps every write
        wait_for_output(worker.output, RETRYING, 2, timeout=30)  # the hop was cancelled
        stall.release()
        aof_redis.start()
        runs = wait_all_terminal(d, [in_flight], timeout=DEADLINE + 30)

    assert worker.alive(), d.logs()
    assert (runs[in_flight].status, runs[in_flight].reason) == ("succeeded", "ok"), d.logs()


def test_an_acknowledgement_on_a_channel_closed_by_a_lost_connection_keeps_the_record(
        tmp_path: Path) -> None:
    """The transport alone, as the worker drives it: a message taken, Redis killed, the
    connection collected and closed (Celery's ``on_connection_error_after_connected``), Redis
    back from its append-only file, then the message acknowledged (and rejected) on its old
    channel: each fails as a connection error (which Celery logs), nothing reaches Redis, the
    record stays for the sweep."""
    with RedisServer(tmp_path / "redis", appendonly=True) as server:
        options = {"visibility_timeout": VISIBILITY, "tracked_queues": ["t"]}
        connection = Connection(server.url(0), transport=Transport, transport_options=options)
        message = received_with_a_brpop_in_flight(connection)
        server.stop(signal.SIGKILL)
        connection.collect(socket_timeout=0.1)
        connection.close()
        server.start()
        client = server.client()
        try:
            assert (client.hlen("unacked"), client.zcard("unacked_index")) == (1, 1)
            with pytest.raises(connection.connection_errors):
                message.ack()
            assert (client.hlen("unacked"), client.zcard("unacked_index")) == (1, 1)
            for requeue in (False, True):  # nor rejected
                with pytest.raises(connection.connection_errors):
                    message.reject(requeue=requeue)
            assert (client.hlen("unacked"), client.zcard("unacked_index")) == (1, 1)
            assert client.llen("t") == 0  # put back by the sweep, not by the rejection
        finally:
            client.close()
