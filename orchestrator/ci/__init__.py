"""CI events: the signed webhook receiver that starts runs, and the event builders the simulator
uses.

:class:`WebhookReceiver` authenticates a GitHub-style delivery (HMAC-SHA256 signature, one-time
delivery id, known and enabled sender) and starts a run for it; :func:`create_webhook_app` serves
it over HTTP. :func:`build_deployment_event` and :func:`build_workflow_run_event` produce the
deliveries, :func:`sign` their signature. See :mod:`orchestrator.ci._parse` for the payloads.
"""

from orchestrator.ci._app import ROUTE, create_webhook_app
from orchestrator.ci._events import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    build_deployment_event,
    build_workflow_run_event,
    encode,
    ping_event,
    sign,
)
from orchestrator.ci._model import CIEvent, EventType, Ignored, MalformedEvent, Trigger
from orchestrator.ci._parse import parse_event
from orchestrator.ci._receiver import MAX_BODY_BYTES, REPLAY_TTL_SECONDS, WebhookReceiver
from orchestrator.ci._run_requests import RUNS_ROUTE, RunParameters, RunRequest, RunRequests
from orchestrator.ci._secret import webhook_key, with_webhook_secret

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "MAX_BODY_BYTES",
    "REPLAY_TTL_SECONDS",
    "ROUTE",
    "RUNS_ROUTE",
    "SIGNATURE_HEADER",
    "CIEvent",
    "EventType",
    "Ignored",
    "MalformedEvent",
    "RunParameters",
    "RunRequest",
    "RunRequests",
    "Trigger",
    "WebhookReceiver",
    "build_deployment_event",
    "build_workflow_run_event",
    "create_webhook_app",
    "encode",
    "parse_event",
    "ping_event",
    "sign",
    "webhook_key",
    "with_webhook_secret",
]
