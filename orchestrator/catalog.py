"""The action catalogue: every operation the mock services offer, by name.

One :class:`Action` per operation (``datadog.metrics.query``, ``github.comment.create``,
``aws.ec2.create_tags``, ``pagerduty.incident.resolve`` ...) names its service, HTTP method, path
template, the scope it requires, the short verb the audit trail records (``metrics:query``,
``comment:post``, ``deploy:create`` ...) and the resource it touches. The service routes are
built from this table, so a route cannot drift from it; :func:`build_request` turns an action
name and flat parameters into the request an agent sends with an httpx client.

Two actions may share one route when the request body tells them apart (PagerDuty's
``PUT /incidents/{id}`` acknowledges or resolves by ``incident.status``); they then share the
scope too. AWS operations have one path each (``/ec2/CreateTags``); the AWS app also accepts the
real wire forms, ``POST /`` with ``X-Amz-Target`` and ``POST /ec2?Action=CreateTags``.

Every action also declares its :class:`Target`: the kind of resource it acts on and where the
request names it. The service resolves that kind to the resource's owning attributes
(environment, repository, service) and the enforcement layer checks them against the token's
``ctx`` before the handler runs; a route whose target kind the service cannot resolve is refused
when the app is built (docs/resources.md).

The catalogue is extensible: services declared by OpenAPI documents in the workflows directory
(``services/<name>.openapi.yaml``, :mod:`orchestrator.services`) add their operations as
``<name>.<operationId>`` when that directory is loaded (:func:`install_services`). A process
serves one workflows directory: installing replaces the previously installed services
(docs/openapi-services.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from orchestrator._action import FIELD, LISTING, Action, Params, Target, lookup
from orchestrator._builtin_actions import ACTIONS
from orchestrator.audit import contains_raw_jwt
from orchestrator.config import SERVICE_NAMES

__all__ = ["ACTIONS", "CATALOG", "LISTING", "REDACTED", "Action", "Params", "Target",
           "actions_for", "build_request", "clean_text", "get_action", "install_services",
           "lookup", "resource_for", "service_names"]

PreparedRequest = tuple[str, str, dict[str, Any], dict[str, Any] | None]

_MAX_VALUE = 128
REDACTED = "[redacted]"
# A base64url-encoded JSON object ('{"' encodes as "eyJ"): the start of any JOSE segment.
_JOSE_SEGMENT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


class Catalog(Mapping[str, Action]):
    """Every action by name: the built-in table, then the installed services' operations."""

    def __init__(self, built_in: Iterable[Action]) -> None:
        self._built_in = {a.name: a for a in built_in}
        self._installed: dict[str, Action] = {}
        self._services: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Action:
        action = self._built_in.get(name)
        return action if action is not None else self._installed[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._built_in
        yield from self._installed

    def __len__(self) -> int:
        return len(self._built_in) + len(self._installed)

    def install(self, services: Mapping[str, Iterable[Action]]) -> None:
        """Make ``services`` (name -> its actions) the installed ones, replacing any before."""
        installed: dict[str, Action] = {}
        for service, actions in services.items():
            if service in SERVICE_NAMES:
                raise ValueError(f"{service} is a built-in service")
            for action in actions:
                if action.service != service or action.name in self._built_in:
                    raise ValueError(f"{action.name} cannot be installed for {service}")
                installed[action.name] = action
        with self._lock:
            self._installed, self._services = installed, tuple(sorted(services))

    @property
    def installed_services(self) -> tuple[str, ...]:
        return self._services


CATALOG = Catalog(ACTIONS)


def install_services(services: Mapping[str, Iterable[Action]]) -> None:
    """Install the operations of the services declared in a workflows directory."""
    CATALOG.install(services)


def service_names() -> tuple[str, ...]:
    """The built-in services, then those installed from OpenAPI documents."""
    return (*SERVICE_NAMES, *CATALOG.installed_services)


def get_action(name: str) -> Action:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"no action named {name!r} in the catalogue") from None


def actions_for(service: str) -> tuple[Action, ...]:
    return tuple(a for a in CATALOG.values() if a.service == service)


def build_request(action_name: str, params: Params) -> PreparedRequest:
    """``(method, path, query, json_body)`` for ``action_name`` with flat ``params``.

    Path parameters come from ``params`` by name; query actions take their declared query
    parameters; other actions send the remaining parameters as the JSON body, or the body their
    catalogue entry builds (PagerDuty's nested ``incident`` / ``note`` objects).
    """
    action = get_action(action_name)
    missing = [p for p in action.path_params if p not in params]
    if missing:
        raise ValueError(f"{action_name} needs parameter {missing[0]!r}")
    path = FIELD.sub(lambda m: _quote_segment(params[m.group(1)], m.group(0)), action.path)
    rest = {k: v for k, v in params.items() if k not in action.path_params}
    wire = dict(action.query)
    if action.method == "GET":
        unknown = set(rest) - set(wire)
        if unknown:
            raise ValueError(f"{action_name} takes no parameter {min(unknown)!r}")
        return action.method, path, {wire[k]: v for k, v in rest.items()}, None
    query = {wire[k]: rest.pop(k) for k in list(rest) if k in wire}
    try:
        body = action.body(rest) if action.body else dict(rest)
    except KeyError as exc:
        raise ValueError(f"{action_name} needs parameter {exc.args[0]!r}") from None
    return action.method, path, query, body if body or action.method != "DELETE" else None


def _quote_segment(value: object, placeholder: str) -> str:
    return quote(str(value), safe="/" if placeholder.endswith(":path}") else "")


def resource_for(action: Action, values: Mapping[str, object], body: object) -> str:
    """The resource string of ``action``: its template filled from path and query values, then
    from the JSON body; lists are joined with commas, anything missing is ``*``."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name) if name in values else lookup(body, name)
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value[:20])
        return clean_text(str(value)) if value not in (None, "") else "*"

    return FIELD.sub(fill, action.resource)[:512]


def clean_text(value: str) -> str:
    """A value fit for the audit trail: bounded, and never a token nor a piece of one (checked
    before truncation, which could otherwise cut a token into something that no longer looks
    like one). A control character or a lone surrogate (no Unicode text: the record refuses it)
    redacts the whole value."""
    if contains_raw_jwt(value) or _JOSE_SEGMENT.search(value) \
            or any(ord(c) < 0x20 or ord(c) == 0x7f or 0xd800 <= ord(c) <= 0xdfff for c in value):
        return REDACTED
    return value[:_MAX_VALUE]
