"""The app factory: one FastAPI app per service, all behind the same enforcement layer.

Each app is its own origin: its audience is its base URL (``settings.service_url(name)``). Its
in-memory state is ``app.state.service`` (what an end-to-end test inspects), its OpenAPI
document is at ``/openapi.json`` and names, per operation, the scope required (``security`` and
``x-required-scope``). ``/openapi.json`` is public and not audited; every other request is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mock_services import aws, datadog, github, pagerduty
from mock_services._access import AccessChecker
from mock_services._bearer import error_response
from mock_services._bodies import validation_response
from mock_services._enforcement import Enforcer
from mock_services._idempotency import idempotency_cache
from mock_services._latency import add_latency
from mock_services._routing import SECURITY_SCHEME, ServiceRouter
from orchestrator.audit import AuditStore
from orchestrator.catalog import actions_for
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory, KeySource, RevocationStore

_BUILDERS: dict[str, Callable[[ServiceRouter, Callable[[], float]], Any]] = {
    "datadog": datadog.build,
    "github": github.build,
    "aws": aws.build,
    "pagerduty": pagerduty.build,
}
_TITLES = {"datadog": "Datadog API (mock)", "github": "GitHub REST API (mock)",
           "aws": "AWS EC2 and CloudWatch (mock)", "pagerduty": "PagerDuty REST API v2 (mock)"}


@dataclass(frozen=True)
class ServiceDeps:
    """What a service app needs from its process: built once at the edge and passed in."""

    settings: Settings
    key_source: KeySource
    revocation: RevocationStore
    directory: Directory
    audit: AuditStore
    clock: Callable[[], float] = time.time


def create_service_app(name: str, deps: ServiceDeps) -> FastAPI:
    """The ASGI app of service ``name`` (one of :data:`SERVICE_NAMES`)."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown service {name!r}; expected one of {', '.join(SERVICE_NAMES)}")
    _check_directory(name, deps.directory)
    audience = deps.settings.service_url(name)
    enforcer = enforcer_for(name, deps)
    app = FastAPI(title=_TITLES[name], version="1.0.0", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    router = ServiceRouter(app, name, enforcer)
    app.state.service = _BUILDERS[name](router, deps.clock)
    router.check_complete()
    app.state.name = name
    app.state.audience = audience
    app.state.enforcer = enforcer
    app.state.close = enforcer.close  # called by whoever serves the app, once it has stopped
    install_handlers(app, enforcer)
    add_latency(app, name, deps.settings)
    app.openapi = lambda: _openapi(app, name, deps.settings)  # type: ignore[method-assign]
    return app


def enforcer_for(name: str, deps: ServiceDeps) -> Enforcer:
    """The enforcement layer of service ``name``: its audience is its base URL."""
    access = AccessChecker(audience=deps.settings.service_url(name), settings=deps.settings,
                           keys=deps.key_source, revocation=deps.revocation,
                           directory=deps.directory, clock=deps.clock, service=name)
    return Enforcer(name, access, deps.audit,
                    idempotency_cache(name, deps.settings, deps.clock), deps.clock)


def _check_directory(name: str, directory: Directory) -> None:
    """The catalogue only uses scopes the directory lists for the service (when it lists any)."""
    listed = directory.services.get(name)
    if listed is None:
        return
    unknown = {a.scope for a in actions_for(name)} - set(listed.scopes)
    if unknown:
        raise ConfigError(f"{name} routes need {sorted(unknown)}, not listed in the directory")


def install_handlers(app: FastAPI, enforcer: Enforcer) -> None:
    """Every request the routes do not take is answered, and audited, by ``enforcer``: an
    unknown route or method, and a known route with a trailing slash too (Starlette would answer
    that with a 307 redirect, unaudited, before any handler)."""
    app.router.redirect_slashes = False
    async def unrouted(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return await enforcer.refuse_unrouted(request, exc)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)[0]

    async def internal(request: Request, exc: Exception) -> Response:
        body = {"error": "server_error", "error_description": "internal error",
                "reason": "internal_error"}
        return error_response(500, body)

    app.add_exception_handler(HTTPException, unrouted)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, internal)


def _openapi(app: FastAPI, name: str, settings: Settings) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, routes=app.routes,
        description=(
            f"Mock {name} service. Every operation needs an access token for audience "
            f"{settings.service_url(name)} obtained by RFC 8693 token exchange, carrying the "
            "scope named in the operation's security requirement (also x-required-scope)."
        ),
    )
    scopes = {a.scope: f"{a.scope.split(':')[2]} {a.scope.split(':')[3]}"
              for a in actions_for(name)}
    schema.setdefault("components", {})["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "oauth2",
            "description": "A delegated access token (RFC 9068 at+jwt) sent as "
                           "'Authorization: Bearer <token>', obtained by token exchange "
                           "(grant_type urn:ietf:params:oauth:grant-type:token-exchange) with "
                           f"resource={settings.service_url(name)}.",
            "flows": {"clientCredentials": {"tokenUrl": f"{settings.auth_url}/token",
                                            "scopes": scopes}},
        }
    }
    schema["servers"] = [{"url": settings.service_url(name)}]
    app.openapi_schema = schema
    return schema
