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
"""

from __future__ import annotations

import hashlib
from typing import Any

from orchestrator.ci._model import MalformedEvent

MAX_ID = 2**63 - 1


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
