"""What makes a CI delivery the same delivery again: its signed content, not its headers.

The HMAC covers the body only, so ``X-GitHub-Delivery`` (a header) proves nothing: anyone who saw
one signed body can send it again under a fresh delivery id. A delivery is therefore known by
keys derived from what the signature covers:

* the event's own id: ``deployment:<deployment.id>``, or
  ``workflow_run:<workflow_run.id>:<workflow_run.run_attempt>`` (a re-run of a workflow is a new
  attempt, and a new event);
* ``sha256:<hex digest of the body>``.

Each key is claimed once; either one seen before makes the delivery a replay. The ids are
required positive integers (``run_attempt`` defaults to 1 when absent), so an event without its
id is malformed rather than unguarded.

The keys are kept for :data:`REPLAY_TTL_SECONDS` (the record stays bounded), so an event must also
be younger than that: its signed time (``deployment.created_at``, ``workflow_run.updated_at``) may
be at most :data:`FRESH_SECONDS` old and :data:`CLOCK_SKEW_SECONDS` ahead, or it is refused
(``stale_event``; a time ahead is malformed). Every body the keys have been forgotten for is
therefore refused as stale: a captured delivery cannot be replayed after the window either.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from orchestrator.ci._model import MalformedEvent
from orchestrator.errors import InfraBotError

MAX_ID = 2**63 - 1
REPLAY_TTL_SECONDS = 24 * 3600
CLOCK_SKEW_SECONDS = 300
# A key is kept from its receipt, which may precede the signed time by the skew: a window two
# skews short of the keys' lifetime means no accepted event outlives its keys.
FRESH_SECONDS = REPLAY_TTL_SECONDS - 2 * CLOCK_SKEW_SECONDS
SIGNED_TIME = {"deployment": ("deployment", "created_at"),
               "workflow_run": ("workflow_run", "updated_at")}


class StaleEvent(InfraBotError):
    """An event older than the replay window: it cannot be told from a replay."""

    reason = "stale_event"


def check_fresh(event_type: str, payload: dict[str, Any], now: float) -> None:
    """Refuse an event whose signed time is outside the replay window (see the module)."""
    section, name = SIGNED_TIME[event_type]
    holder = payload.get(section)
    value = holder.get(name) if isinstance(holder, dict) else None
    field = f"{section}.{name}"
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 64 \
            else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise MalformedEvent(f"{field} must be an ISO 8601 time with a zone", field=field)
    age = now - when.timestamp()
    if age > FRESH_SECONDS:
        raise StaleEvent(f"{field} is more than {FRESH_SECONDS // 3600} h old: the event "
                         "cannot be told from a replay")
    if age < -CLOCK_SKEW_SECONDS:
        raise MalformedEvent(f"{field} is ahead of the receiver's clock", field=field)


def content_keys(event_type: str, payload: dict[str, Any], body: bytes) -> tuple[str, str]:
    """The event-id key and the body-digest key of a signed delivery."""
    if event_type == "deployment":
        identity = f"deployment:{_id(payload, 'deployment', 'id')}"
    else:
        attempt = _id(payload, "workflow_run", "run_attempt", default=1)
        identity = f"workflow_run:{_id(payload, 'workflow_run', 'id')}:{attempt}"
    return identity, "sha256:" + hashlib.sha256(body).hexdigest()


def _id(payload: dict[str, Any], section: str, name: str, default: int | None = None) -> int:
    holder = payload.get(section)
    value = holder.get(name, default) if isinstance(holder, dict) else None
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise MalformedEvent(f"{section}.{name} must be a positive integer",
                             field=f"{section}.{name}")
    return value
