"""Mock Datadog, GitHub, AWS and PagerDuty services that enforce delegated tokens.

Each service is its own ASGI app and origin (audience = its base URL), keeps real in-memory
state (``app.state.service``), publishes ``/openapi.json`` naming each route's scope, and runs
every request through one enforcement layer that verifies the token against the authorization
server's published keys, checks revocation, scope, context and the directory, honours
``Idempotency-Key`` on mutating routes, and writes one audit record per call.

The operations are listed, by action name, in :mod:`orchestrator.catalog`. A service declared by
an OpenAPI document in the workflows directory is served the same way by
:func:`create_declared_app` (docs/openapi-services.md).
"""

from mock_services._access import Caller
from mock_services._app import ServiceDeps, create_service_app
from mock_services._declared import create_declared_app
from mock_services._jwks import fetch_published_keys, remote_key_source
from orchestrator.catalog import CATALOG, Action, build_request, get_action
from orchestrator.config import SERVICE_NAMES

__all__ = [
    "CATALOG",
    "SERVICE_NAMES",
    "Action",
    "Caller",
    "ServiceDeps",
    "build_request",
    "create_declared_app",
    "create_service_app",
    "fetch_published_keys",
    "get_action",
    "remote_key_source",
]
