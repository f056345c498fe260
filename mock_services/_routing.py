"""Routes built from the catalogue, so method, path and scope cannot drift from it.

A service module declares a handler for catalogue actions by name::

    @router.route("github.comment.create", status_code=201)
    async def create_comment(owner: str, ..., caller: CallerDep) -> Comment: ...

and :class:`ServiceRouter` takes the method, path, scope, audit action and resource from the
catalogue, runs the handler inside the enforcement layer, and documents the scope in the
operation's OpenAPI ``security`` requirement and its ``x-required-scope`` extension.

A service first registers how it resolves each target kind its actions name
(``@router.resolves("aws.instance")``); a route whose target kind has no resolver is refused
with :class:`~orchestrator.errors.ConfigError` when the app is built, so no route can skip the
resource check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI

from mock_services._access import Caller
from mock_services._bearer import ERROR_RESPONSES
from mock_services._enforcement import EnforcedRoute, Enforcer, current_caller
from mock_services._idempotency import HEADER
from mock_services._targets import Resolver
from orchestrator.catalog import Action, actions_for, get_action
from orchestrator.errors import ConfigError

CallerDep = Annotated[Caller, Depends(current_caller)]
SECURITY_SCHEME = "delegated_token"
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=Resolver)


def openapi_extra(actions: tuple[Action, ...]) -> dict[str, Any]:
    first = actions[0]
    extra: dict[str, Any] = {
        "security": [{SECURITY_SCHEME: [first.scope]}],
        "x-required-scope": first.scope,
        "x-actions": [
            {"name": a.name, "audit_action": a.audit_action, "resource": a.resource,
             **({"when": {a.match[0]: a.match[1]}} if a.match else {})}
            for a in actions
        ],
        "parameters": [{
            "name": "X-Request-Id", "in": "header", "required": False,
            "schema": {"type": "string", "maxLength": 128},
            "description": "Correlates the call with its audit record; echoed in the answer.",
        }],
    }
    if first.mutating:
        extra["parameters"].append({
            "name": HEADER, "in": "header", "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "Retries with the same key replay the first answer; the same key "
                           "with a different request is 422 idempotency_key_reused.",
        })
    return extra


class ServiceRouter:
    def __init__(self, app: FastAPI, service: str, enforcer: Enforcer) -> None:
        self.app = app
        self.service = service
        self._enforcer = enforcer
        self._registered: set[str] = set()
        self._resolvers: dict[str, Resolver] = {}

    def resolves(self, kind: str) -> Callable[[R], R]:
        """Register the decorated function as the resolver of target ``kind``."""
        def register(resolver: R) -> R:
            if kind in self._resolvers:
                raise ConfigError(f"{self.service} resolves {kind} twice")
            self._resolvers[kind] = resolver
            return resolver

        return register

    def route(self, *names: str, operation_id: str | None = None,
              status_code: int = 200) -> Callable[[F], F]:
        """Register the decorated handler for the catalogue actions ``names`` (several only
        when they share method, path and scope and differ by request body)."""
        actions = tuple(get_action(n) for n in names)
        first = actions[0]
        for action in actions:
            if action.service != self.service:
                raise ConfigError(f"{action.name} belongs to {action.service}, not {self.service}")
            if (action.method, action.path, action.scope) != (first.method, first.path,
                                                              first.scope):
                raise ConfigError(f"{action.name} cannot share a route with {first.name}")
            if action.name in self._registered:
                raise ConfigError(f"{action.name} has two routes")
            if action.target != first.target:
                raise ConfigError(f"{action.name} names another target than {first.name}")
        target = first.target
        resolve = self._resolvers.get(target.kind)
        if resolve is None and not target.listing:
            raise ConfigError(f"{first.name} acts on a {target.kind}, which {self.service} "
                              "does not resolve: its owner could not be checked")

        def register(endpoint: F) -> F:
            route = EnforcedRoute(
                first.path, endpoint, enforcer=self._enforcer, actions=actions, resolve=resolve,
                methods=[first.method], status_code=status_code,
                operation_id=operation_id or first.name, name=operation_id or first.name,
                summary=first.summary if len(actions) == 1 else " / ".join(
                    a.summary for a in actions),
                tags=[self.service], responses=ERROR_RESPONSES,
                openapi_extra=openapi_extra(actions),
                dependency_overrides_provider=self.app,
            )
            self.app.router.routes.append(route)
            self._registered.update(names)
            return endpoint

        return register

    def check_complete(self) -> None:
        """Every catalogue action of this service has its route."""
        missing = [a.name for a in actions_for(self.service) if a.name not in self._registered]
        if missing:
            raise ConfigError(f"{self.service} has no route for {', '.join(missing)}")
