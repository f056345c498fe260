"""Our Redis transport records a message of a tracked queue as unacknowledged from its
publication (``infrabot._redis_broker``), against a ``redis-server`` of the test's own.

Kombu records a message only after its consumer's ``BRPOP`` took it: a consumer that dies in
between loses it for good. Here the consumer that dies is played by a bare ``BRPOP``: it takes
the message and records nothing. The worker-level test, with real workers and SIGKILL, is
``test_worker_lost_window.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.message import Message
from kombu.utils.json import loads

from infrabot._redis_broker import KEPT, RESTORED, Transport
from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis
VISIBILITY = 1.0
TRACKED = Queue("argocd", Exchange("argocd"), routing_key="argocd")
UNTRACKED = Queue("other", Exchange("other"), routing_key="other")


@pytest.fixture
def broker(own_redis: RedisServer) -> Iterator[Connection]:
    options = {"visibility_timeout": VISIBILITY, "tracked_queues": ["argocd"]}
    with Connection(own_redis.url(0), transport=Transport, transport_options=options) as conn:
        yield conn


@pytest.fixture
def raw(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis.url(0))
    yield client
    client.close()


def publish(conn: Connection, queue: Queue, body: str) -> None:
    Producer(conn.default_channel).publish({"hop": body}, exchange=queue.exchange,
                                           routing_key=queue.routing_key, declare=[queue])


def sweep(conn: Connection) -> None:
    time.sleep(VISIBILITY + 0.1)
    conn.default_channel.qos.restore_visible(num=None, interval=1)


def take(conn: Connection, queue: Queue) -> Message:
    got: list[Message] = []
    with Consumer(conn.default_channel, [queue], callbacks=[lambda _b, m: got.append(m)]):
        conn.drain_events(timeout=2)
    [message] = got
    return message


def test_a_message_taken_by_a_consumer_that_died_before_recording_it_comes_back(
        broker: Connection, raw: redis.Redis) -> None:
    publish(broker, TRACKED, "h1")
    assert raw.hlen("unacked") == 1  # recorded with its publication
    popped = raw.brpop(["argocd"], timeout=1)  # the dying consumer: taken, nothing recorded
    assert popped is not None and raw.llen("argocd") == 0
    sweep(broker)
    [back] = raw.lrange("argocd", 0, -1)
    assert loads(back)["headers"]["redelivered"] is True
    assert raw.hlen("unacked") == 1  # the copy put back is recorded too
    message = take(broker, TRACKED)
    assert message.payload == {"hop": "h1"}
    message.ack()
    assert (raw.hlen("unacked"), raw.zcard("unacked_index"), raw.llen("argocd")) == (0, 0, 0)


def test_a_message_still_waiting_past_the_timeout_is_kept_not_copied(
        broker: Connection, raw: redis.Redis) -> None:
    publish(broker, TRACKED, "h1")
    [(tag, published)] = raw.zrange("unacked_index", 0, -1, withscores=True)
    sweep(broker)
    assert raw.llen("argocd") == 1  # no second copy
    [(_, moved)] = raw.zrange("unacked_index", 0, -1, withscores=True)
    assert moved > published + VISIBILITY  # its time moved to the sweep's
    assert broker.default_channel.sweep_one(raw, tag.decode(), time.time()) == KEPT


def test_two_sweeps_at_once_restore_a_message_once(broker: Connection,
                                                   raw: redis.Redis) -> None:
    publish(broker, TRACKED, "h1")
    raw.brpop(["argocd"], timeout=1)
    [tag] = raw.zrange("unacked_index", 0, -1)
    time.sleep(VISIBILITY + 0.1)
    ceil = time.time() - VISIBILITY  # both sweeps read the record as due
    channel = broker.default_channel
    assert [channel.sweep_one(raw, tag.decode(), ceil) for _ in range(2)] == [RESTORED, 0]
    assert raw.llen("argocd") == 1


def test_an_acknowledged_message_leaves_no_record(broker: Connection,
                                                  raw: redis.Redis) -> None:
    publish(broker, TRACKED, "h1")
    take(broker, TRACKED).ack()
    sweep(broker)
    assert (raw.hlen("unacked"), raw.zcard("unacked_index"), raw.llen("argocd")) == (0, 0, 0)


def test_a_rejected_message_put_back_stays_recorded(broker: Connection,
                                                    raw: redis.Redis) -> None:
    publish(broker, TRACKED, "h1")
    take(broker, TRACKED).reject(requeue=True)
    assert (raw.llen("argocd"), raw.hlen("unacked"), raw.zcard("unacked_index")) == (1, 1, 1)
    raw.brpop(["argocd"], timeout=1)  # and taken by a consumer that dies: back again
    sweep(broker)
    assert raw.llen("argocd") == 1


def test_purging_a_tracked_queue_drops_its_records(broker: Connection,
                                                   raw: redis.Redis) -> None:
    for body in ("h1", "h2"):
        publish(broker, TRACKED, body)
    assert TRACKED.bind(broker.default_channel).purge() == 2
    sweep(broker)
    assert (raw.hlen("unacked"), raw.zcard("unacked_index"), raw.llen("argocd")) == (0, 0, 0)


def test_an_untracked_queue_is_recorded_only_once_taken_as_kombu_does(
        broker: Connection, raw: redis.Redis) -> None:
    publish(broker, UNTRACKED, "x")
    assert raw.hlen("unacked") == 0
    message = take(broker, UNTRACKED)
    assert raw.hlen("unacked") == 1
    message.ack()
    assert raw.hlen("unacked") == 0
