"""Kombu's Redis transport with the fix for a worker killed by a Redis restart (issue 20).

Root cause, kombu 5.7.0 with Celery 5.7.0 (the newest releases; no fixed release exists): when
Redis goes away while the worker's consumer has a BRPOP in flight, Celery's consumer
(``on_connection_error_after_connected``) first calls ``Connection.collect()`` and then
``Connection.close()``.

1. ``collect()`` closes the default channel. ``Channel.close()`` first reads the pending BRPOP
   reply (kombu PR #1733, so a popped message is not lost); on a dead socket that read raises
   ``ConnectionError`` out of ``close()`` before the channel is marked closed. ``collect()``
   swallows that error and then detaches the transport (``transport.client = None``).
2. ``close()`` closes the same channel again. Its pools were dropped, so restoring the
   unacknowledged messages builds a new pool from ``self.connection.client.hostname``: the
   client is ``None`` and ``AttributeError`` escapes. It is not a connection error, so neither
   kombu's ``maybe_close_channel`` nor Celery's ``ignore_errors`` catch it, and the worker stops
   with ``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")``.
   A late ``ack``/``reject`` of a message received on that channel (the hop whose retry could
   not be published is rejected) takes the same path.

The fix, two overrides: a BRPOP reply that cannot be read because the connection died while the
channel closes is treated as "nothing popped" (nothing can be read from a dead socket), so the
first close completes; and a channel whose transport was detached raises a connection error
(which every caller above handles as the broker being gone) instead of dereferencing ``None``.
An acknowledgement that cannot be delivered leaves the message in Redis's unacked set, from
which the visibility timeout restores it.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):  # type: ignore[misc]
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


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
