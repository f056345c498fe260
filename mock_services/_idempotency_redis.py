"""How a kept ``Idempotency-Key`` answer is held (:class:`Kept`) and spelled in Redis: the
values :class:`~mock_services._idempotency.RedisIdempotencyCache` stores (an answer, or a claim
on the key by a request in flight) and the compare-and-set script it changes them with."""

from __future__ import annotations

import base64
import json
from typing import NamedTuple

from mock_services._bearer import ApiError
from orchestrator.errors import Unavailable


class Kept(NamedTuple):
    fingerprint: str
    status: int
    body: bytes
    media_type: str | None
    expires_at: float
    audited: bool = False  # the act behind this answer has its audit record
    auditing_until: float = 0.0  # a request writes that record until then (0: none does)


# KEYS[1] holds ARGV[1] (a claim or an answer): set ARGV[2] for ARGV[3] s (0: what is left of
# its expiry) or, ARGV[2] empty, delete it. 1 if it did, 0 if the key holds anything else.
IF_CLAIMED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
local ms = tonumber(ARGV[3]) * 1000
if ms == 0 then ms = redis.call('PTTL', KEYS[1]) end
if ms <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ms)
return 1
"""


def encode(kept: Kept) -> str:
    """A kept answer as stored: the same answer always spells the same (compare and set), with
    no lease (none running) as a serve from before leases spelled it."""
    value = {"fingerprint": kept.fingerprint, "status": kept.status,
             "body": base64.b64encode(kept.body).decode(), "media_type": kept.media_type,
             "audited": kept.audited}
    return json.dumps({**value, "auditing_until": float(kept.auditing_until)}
                      if kept.auditing_until else value)  # always a float: decode reads one


def pending(print_: str, claim: str) -> str:
    """The value of a key claimed by request ``claim`` for the request printed ``print_``."""
    return json.dumps({"pending": print_, "claim": claim})


def in_use() -> ApiError:
    return ApiError(409, "idempotency_key_in_use",
                    "a request under this Idempotency-Key is in progress; retry later")


def unavailable() -> Unavailable:
    return Unavailable("the idempotency store cannot be reached",
                       reason="idempotency_unavailable")


def decode(found: bytes, now: float) -> Kept:
    """A kept answer; 409 if the key's first request is still in flight (or died in it)."""
    try:
        value = json.loads(found)
        if "pending" in value:
            raise in_use()
        return Kept(value["fingerprint"], int(value["status"]),
                    base64.b64decode(value["body"]), value["media_type"], now + 1,
                    value.get("audited", True) is True,  # written before the flag: audited
                    float(value.get("auditing_until", 0.0)))  # before the lease: none running
    except (ValueError, KeyError, TypeError) as exc:  # not an answer this cache wrote
        raise unavailable() from exc
