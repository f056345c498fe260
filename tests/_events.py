"""Run event details for tests: each kind's model with plausible values, any of them changed.

``detail("exchanged", granted=READ)`` is an :data:`~orchestrator.runs.EventDetail` built through
the same validation the run log applies to what it reads (``for`` by its JSON name).
"""

from __future__ import annotations

from typing import Any

from orchestrator.runs import EventDetail, parse_detail

_CALL = {"service": "datadog", "action": "metrics:query", "method": "GET", "path": "/metrics",
         "replayed": False, "ms": 3}
DEFAULTS: dict[str, dict[str, Any]] = {
    "started": {"event": "deployment", "delivery": "d-1", "user": "user:sam",
                "trigger": "ci_pipeline", "environment": "prod", "service": "service-x",
                "commit": "9f2c1e7", "mode": "delegated"},
    "root_granted": {"user_permissions": [], "needed": [], "granted": [], "dropped": [],
                     "may_act": "agent:infrabot", "expires_in": 300, "claims": None},
    "root_denied": {"needed": [], "error": "invalid_scope", "reason": "scope_not_grantable"},
    "exchanged": {"for": "datadog.metrics.query", "requested": None, "granted": None,
                  "expires_in": 300, "claims": None, "ms": 4},
    "exchange_denied": {"for": "datadog.metrics.query", "requested": None,
                        "error": "invalid_scope", "reason": "scope_not_grantable", "ms": 4},
    "called": {**_CALL, "status": 200, "reason": "ok"},
    "call_denied": {**_CALL, "status": 403, "reason": "insufficient_scope"},
    "handed_off": {"to": "agent:argocd", "scope": None},
    "step_skipped": {"action": "github.comment.create", "when": "steps.latency.p99 <= 500"},
    "branch_taken": {"to": ["agent:argocd", "agent:scanner"], "when": None,
                     "join": "agent:cleanup"},
    "branch_ended": {"status": "denied", "reason": "agent:scanner pr:read at github: 403"},
    "retrying": {"reason": "datadog_unreachable", "attempt": 1, "in_seconds": 0.25},
    "finished": {"status": "succeeded", "reason": "ok"},
}


def detail(kind: str, **changes: Any) -> EventDetail:
    """The ``kind`` event's detail: the defaults above with ``changes`` (``for_`` for ``for``)."""
    if "for_" in changes:
        changes["for"] = changes.pop("for_")
    return parse_detail(kind, {**DEFAULTS[kind], **changes})
