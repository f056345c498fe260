"""The app of a service declared by an OpenAPI document (``services/<name>.openapi.yaml``).

Built like the four built-in services: its own origin (audience = ``settings.service_url(name)``),
one :class:`~mock_services._enforcement.EnforcedRoute` per operation, so every request goes
through the same enforcement layer (token, DPoP proof of a bound token, revocation, scope,
context, the objects it names), the same ``Idempotency-Key`` cache on write operations and one
audit record per call. Behind it, the generic stateful mock (:mod:`mock_services._declared_state`)
answers, checked against the document (:mod:`mock_services._declared_handler`).

``/openapi.json`` serves the document as written, with ``servers`` naming this origin and the
delegated-token security scheme each operation's ``x-required-scope`` requires.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from mock_services._app import ServiceDeps, enforcer_for, install_handlers
from mock_services._bearer import ERROR_RESPONSES
from mock_services._declared_handler import OperationHandler
from mock_services._declared_schemas import Schemas
from mock_services._declared_state import DeclaredState
from mock_services._enforcement import EnforcedRoute
from mock_services._latency import add_latency
from mock_services._routing import SECURITY_SCHEME
from mock_services._targets import Resolver
from orchestrator.identity import ResourceAttributes
from orchestrator.services import DeclaredOperation, DeclaredService


def create_declared_app(service: DeclaredService, deps: ServiceDeps) -> FastAPI:
    """The ASGI app of a declared service."""
    name = service.name
    audience = deps.settings.service_url(name)
    enforcer = enforcer_for(name, deps)
    info = service.document.info
    app = FastAPI(title=info.title, version=info.version, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    state = DeclaredState(name, deps.clock)
    schemas = Schemas(service.raw)
    # Literal segments before parameters, so /channels/archived is not read as a channel id.
    for declared in sorted(service.operations, key=lambda o: (o.action.path.count("{"),
                                                              o.action.path)):
        action = declared.action
        handler = OperationHandler(declared, state, schemas)
        app.router.routes.append(EnforcedRoute(
            action.path, handler.endpoint(), enforcer=enforcer, actions=(action,),
            resolve=_resolver(state, declared), methods=[action.method],
            status_code=handler.status, operation_id=action.name, name=action.name,
            summary=action.summary, responses=ERROR_RESPONSES, include_in_schema=False,
            dependency_overrides_provider=app))
    app.state.service = state
    app.state.name = name
    app.state.audience = audience
    app.state.enforcer = enforcer
    app.state.close = enforcer.close
    install_handlers(app, enforcer)
    add_latency(app, name, deps.settings)
    document = published(service, audience, deps.settings.auth_url)
    app.openapi = lambda: document  # type: ignore[method-assign]
    return app


def _resolver(state: DeclaredState, declared: DeclaredOperation) -> Resolver | None:
    if not declared.binds:
        return None
    route, fields, binds = declared.action.path, declared.action.target.fields, declared.binds

    def resolve(values: tuple[object, ...]) -> list[ResourceAttributes]:
        return state.resolve(route, fields, binds, values)

    return resolve


def published(service: DeclaredService, audience: str, auth_url: str) -> dict[str, Any]:
    """The document as served: as written, plus where it is and how its tokens are obtained."""
    document = copy.deepcopy(dict(service.raw))
    document["servers"] = [{"url": audience}]
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "oauth2",
        "description": "A delegated access token (RFC 9068 at+jwt, DPoP-bound unless the "
                       "directory says otherwise) obtained by RFC 8693 token exchange with "
                       f"resource={audience}.",
        "flows": {"clientCredentials": {"tokenUrl": f"{auth_url}/token",
                                        "scopes": {s: s for s in service.scopes}}},
    }
    for declared in service.operations:
        action = declared.action
        operation = document["paths"][action.path][action.method.lower()]
        operation.setdefault("security", [{SECURITY_SCHEME: [action.scope]}])
    return document
