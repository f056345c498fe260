"""Kombu's Redis transport with two fixes of ours (issue 20): a worker no longer dies when Redis
restarts, and a hop is no longer lost when its worker dies just after taking it.

**A hop taken but never recorded.** Kombu emulates acknowledgements on Redis: a consumer takes a
message with ``BRPOP`` and *then* records it as unacknowledged (``QoS.append``: the ``unacked``
hash and the ``unacked_index`` sorted set, which the visibility-timeout sweep restores from).
Between the two, the message exists only in the reply on its way to the consumer. A consumer
SIGKILLed then loses it for good: nothing restores it. The window is not microseconds: it lasts
until the consumer is scheduled, reads the reply and its pipeline reaches Redis, tens of
milliseconds on a loaded machine; kombu 5.7.0 also keeps a ``BRPOP`` reply unread while a
consumer has no free slot (``_pause_brpop``), for as long as a hop runs. The chaos benchmark
lost 5 of 200 runs so (docs/reliability.md shows how it was reproduced).

The fix: a message published to a queue in ``tracked_queues`` (the agent queues) is recorded as
unacknowledged when it is *published*, in the same ``MULTI`` as its ``LPUSH``, so at every moment
it is in its queue, or recorded, or acknowledged. The consumer's own record (kombu's, unchanged)
only moves its time to the delivery. The sweep (:meth:`QoS.restore_visible`) looks at records
older than the visibility timeout and, in one Lua script each, keeps a message that is still in
its queue (waiting, not lost: its time is moved to now) and restores one that is not (taken and
never acknowledged: by a worker that died, or with the reply). A restored copy, and a rejected
or shut-down worker's message put back, stays recorded. Purging a tracked queue drops the
records of what it held. A tracked queue must be consumed with acknowledgements (a ``no_ack``
consumer never removes the record, and the message would come back after every timeout).

**A worker stopped by a Redis restart** (kombu 5.7.0 with Celery 5.7.0): when Redis goes away
while the consumer has a BRPOP in flight, Celery's consumer calls ``Connection.collect()`` and
then ``Connection.close()``. ``collect()`` closes the default channel, whose ``close()`` first
reads the pending BRPOP reply (kombu PR #1733); on a dead socket that raises out of ``close()``
before the channel is marked closed, and ``collect()`` detaches the transport
(``transport.client = None``). ``close()`` closes the channel again and, restoring the
unacknowledged messages, builds a pool from ``self.connection.client.hostname``:
``AttributeError``, which nothing catches, and the worker stops (``Unrecoverable error``). Two
overrides: a BRPOP reply that cannot be read while the channel closes counts as nothing popped,
and a channel whose transport was detached raises a connection error, which every caller
handles as the broker being gone. An acknowledgement that cannot be delivered leaves the
message recorded, from which the visibility timeout restores it.

**An acknowledgement on a lost channel** (a hop lost by an append-only Redis restarted under it):
a delivery belongs to the channel that delivered it, as on AMQP, where the broker requeues what a
closed channel held and an acknowledgement cannot reach another channel. Kombu's channel, closed,
still acknowledges: its pool, remade while it tried to restore its messages to a Redis that was
down, reaches the restarted Redis and deletes the record. Celery 5.7.0 acknowledged so a hop it
cancelled on the connection's loss when it could not record the cancellation (its result backend
on the same, down, Redis: ``Request.cancel`` raised before it marked the request cancelled, so
the pool's ``Terminated`` counted as a revocation, which acknowledges; no process keeps results
now), and may on another path. An acknowledgement or a rejection on a
channel that is closing or closed sends nothing and fails as a connection error (which Celery
logs, as any it cannot deliver): the message stays recorded and the sweep restores it after the
visibility timeout.
"""

from __future__ import annotations

from collections.abc import Iterable
from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = f"{__name__}:Transport"

# KEYS: the unacked hash, its index, the message's queue lists. ARGV: tag, ceil (a record is
# due if its time is at most this), now, the record as read, the message as it sits in a queue,
# the restored message, its record, "1" if the restored copy stays recorded.
_SWEEP = """
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then redis.call('ZREM', KEYS[2], ARGV[1]) return 0 end
if record ~= ARGV[4] then return 0 end
for i = 3, #KEYS do
  if redis.call('LPOS', KEYS[i], ARGV[5], 'RANK', -1) then
    redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
    return 1
  end
end
for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[6]) end
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 2
"""
KEPT, RESTORED = 1, 2

# KEYS: the unacked hash, its index, a queue's lists. Deletes the lists and their records.
_PURGE = """
local purged = 0
for i = 3, #KEYS do
  for _, item in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    local ok, message = pcall(cjson.decode, item)
    if ok and type(message) == 'table' and type(message.properties) == 'table' then
      local tag = message.properties.delivery_tag
      if tag then
        redis.call('HDEL', KEYS[1], tag)
        redis.call('ZREM', KEYS[2], tag)
      end
    end
    purged = purged + 1
  end
  redis.call('DEL', KEYS[i])
end
return purged
"""


def _record(message: dict[str, Any]) -> tuple[str, str]:
    """A message's delivery tag and its unacked record, as kombu's ``QoS.append`` writes it."""
    properties = message["properties"]
    delivery = properties["delivery_info"]
    record = dumps([message, delivery["exchange"], delivery["routing_key"]])
    return properties["delivery_tag"], record


def _redelivered(message: dict[str, Any]) -> None:
    """Mark a message put back as redelivered, as kombu does."""
    try:
        message["headers"]["redelivered"] = True
        message["properties"]["delivery_info"]["redelivered"] = True
    except KeyError:
        pass


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def restore_visible(self, start: int = 0, num: int | None = 10,
                        interval: int = 10) -> None:
        """Kombu's sweep (same throttle, mutex and query), each due record handled by
        :meth:`Channel.sweep_one`: restored if the message left its queue, else kept."""
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        with self.channel.conn_or_acquire() as client:
            ceil = time() - self.visibility_timeout
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key,
                                       self.unacked_mutex_expire):
                    due = client.zrange(self.unacked_index_key, ceil, 0, desc=True,
                                        byscore=True, offset=num and start, num=num,
                                        withscores=True)
                    for tag, _ in due or []:
                        self.channel.sweep_one(client, bytes_to_str(tag), ceil)
            except kombu_redis.MutexHeld:
                pass


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS
    tracked_queues: Iterable[str] = ()
    # kombu declares the base's as a tuple literal, so mypy types it by its exact length
    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.Channel.from_transport_options, "tracked_queues")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracked_queues = frozenset(self.tracked_queues)
        if self.tracked_queues and self.global_keyprefix:
            raise ValueError("tracked_queues cannot be used with global_keyprefix")

    # -- the fix for a worker stopped by a Redis restart -----------------------------------

    def _brpop_read(self, **options: Any) -> Any:
        try:
            return super()._brpop_read(**options)
        except self.connection_errors:
            if not self._closing:
                raise
            raise kombu_redis.Empty() from None  # closing a dead connection: nothing popped

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was released")
        return dict(super()._connparams(asynchronous=asynchronous))

    # -- a delivery belongs to its channel --------------------------------------------------

    def _still_open(self, what: str, delivery_tag: str) -> None:
        """Nothing is sent for a delivery of a channel closing or closed: a connection error
        (the message stays recorded; the sweep restores it after the visibility timeout)."""
        if self._closing or self.closed:
            raise RedisConnectionError(f"{what} of {delivery_tag} not sent: its channel was "
                                       "closed; the message comes back after the visibility "
                                       "timeout")

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        self._still_open("acknowledgement", delivery_tag)
        super().basic_ack(delivery_tag, multiple=multiple)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._still_open("rejection", delivery_tag)
        super().basic_reject(delivery_tag, requeue=requeue)

    # -- a message recorded as unacknowledged from its publication --------------------------

    def _tracks(self, queue: str) -> bool:
        return queue in self.tracked_queues and queue not in self._expires

    def _list_key(self, queue: str, message: dict[str, Any]) -> str:
        return str(self._q_for_pri(queue, self._get_message_priority(message, reverse=False)))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if not self._tracks(queue):
            return super()._put(queue, message, **kwargs)  # type: ignore[no-any-return]
        tag, record = _record(message)
        batch = kwargs.get("_publish_batch")
        if batch is not None:  # a non-transactional batch: recorded first, then queued
            batch.add("hset", self.unacked_key, tag, record)
            batch.add("zadd", self.unacked_index_key, {tag: time()})
            return super()._put(queue, message, **kwargs)  # type: ignore[no-any-return]
        with self.conn_or_acquire() as client, client.pipeline() as pipe:  # MULTI ... EXEC
            pipe.hset(self.unacked_key, tag, record)
            pipe.zadd(self.unacked_index_key, {tag: time()})
            pipe.lpush(self._list_key(queue, message), dumps(message))
            pipe.execute()
        return None

    def _queues_for(self, exchange: str, routing_key: str) -> list[str]:
        """The queues a message goes back to; none (it is dropped, as kombu drops it) if its
        route cannot be looked up."""
        try:
            return list(self._lookup(exchange, routing_key))
        except self.connection_errors:
            raise
        except Exception:  # noqa: BLE001 - as kombu: an unroutable message is logged, dropped
            kombu_redis.crit("Could not restore a message to %s/%s", exchange, routing_key,
                             exc_info=True)
            return []

    def _do_restore_message(self, payload: dict[str, Any], exchange: str, routing_key: str,
                            pipe: Any, leftmost: bool = False) -> None:
        """Kombu's restore (in the caller's transaction); a copy put back to a tracked queue is
        recorded again, so that it is never unrecorded while it waits."""
        _redelivered(payload)
        queues = self._queues_for(exchange, routing_key)
        for queue in queues:
            (pipe.lpush if leftmost else pipe.rpush)(self._list_key(queue, payload),
                                                     dumps(payload))
        if any(self._tracks(queue) for queue in queues):
            tag, record = _record(payload)
            pipe.hset(self.unacked_key, tag, record)
            pipe.zadd(self.unacked_index_key, {tag: time()})

    def sweep_one(self, client: Any, tag: str, ceil: float) -> int:
        """One record due at ``ceil``: 0 if it is no longer due, KEPT (its message is still in
        its queue, its time moved to now), or RESTORED (put back to its queue)."""
        raw = client.hget(self.unacked_key, tag)
        if raw is None:
            client.zrem(self.unacked_index_key, tag)
            return 0
        record = bytes_to_str(raw)
        message, exchange, routing_key = loads(record)
        queued = dumps(message)
        queues = self._queues_for(exchange, routing_key)
        _redelivered(message)
        keys = [self._list_key(queue, message) for queue in queues]
        track = any(self._tracks(queue) for queue in queues)
        return int(client.eval(_SWEEP, 2 + len(keys), self.unacked_key,
                               self.unacked_index_key, *keys, tag, repr(ceil), repr(time()),
                               record, queued, dumps(message), _record(message)[1],
                               "1" if track else "0"))

    def _purge(self, queue: str) -> int:
        if not self._tracks(queue):
            return int(super()._purge(queue))
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps]
        with self.conn_or_acquire() as client:
            return int(client.eval(_PURGE, 2 + len(keys), self.unacked_key,
                                   self.unacked_index_key, *keys))


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
