"""Loading the services a workflows directory declares in ``services/<name>.openapi.yaml``
(or ``.json``) and turning each operation into a catalogue :class:`~orchestrator.catalog.Action`
named ``<name>.<operationId>``.

Every refusal is one :class:`~orchestrator.errors.ConfigError` line naming the file and the JSON
path of what is wrong: an operation without ``x-required-scope``, a scope the directory does not
list for the service (``services.<name>.scopes`` in ``directory.yaml``), a missing or duplicate
``operationId``, a name that clashes with a built-in service, a value JSON cannot hold (an unquoted
YAML date), a ``$ref`` that names nothing in the document (or lies outside it: nothing is
fetched), a route naming a parameter twice or differing from another only in parameter names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator._action import FIELD, LISTING, Action, Target
from orchestrator._yamlfile import parse
from orchestrator.catalog import install_services
from orchestrator.config import SERVICE_NAMES
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory, is_scope
from orchestrator.services._checks import broken_ref, non_json
from orchestrator.services._document import (
    Document,
    JsonPath,
    Operation,
    Parameter,
    json_path,
)

SUFFIXES = (".openapi.yaml", ".openapi.json")
SERVICES_FOLDER = "services"
MAX_DOCUMENT_BYTES = 1 << 20
_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_OPERATION_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_PATH_PARAM = re.compile(r"\{([^{}]*)\}")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class DeclaredOperation:
    """One operation: its catalogue action, its declaration, and the path parameters whose
    objects the request is bound to (those ``x-resource`` names; all of them without it)."""

    action: Action
    operation: Operation
    binds: tuple[str, ...]
    shared: tuple[Parameter, ...] = ()  # the path item's parameters, for all its operations


@dataclass(frozen=True)
class DeclaredService:
    name: str
    source: Path
    document: Document
    raw: Mapping[str, Any]  # the document as written: served at /openapi.json, holds the $refs
    operations: tuple[DeclaredOperation, ...]

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(o.action for o in self.operations)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o.action.scope for o in self.operations))


def service_files(folder: Path) -> dict[str, Path]:
    """``<name>`` -> its document, for every ``services/<name>.openapi.{yaml,json}``."""
    found: dict[str, Path] = {}
    where = folder / SERVICES_FOLDER
    if not where.is_dir():
        return found
    for path in sorted(where.iterdir()):
        suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
        if suffix is None:
            continue
        name = path.name[: -len(suffix)]
        if not _NAME.match(name):
            raise ConfigError(f"{path}: $: the service name {name!r} must be lowercase letters and "
                              "digits, starting with a letter (at most 32)")
        if name in SERVICE_NAMES:
            raise ConfigError(f"{path}: $: {name} is a built-in service; name the file "
                              "services/<another name>.openapi.yaml")
        if name in found:
            raise ConfigError(f"{path}: $: service {name} is also declared by {found[name]}")
        found[name] = path
    return found


def load_services(folder: Path, directory: Directory) -> tuple[DeclaredService, ...]:
    """Every service the workflows ``folder`` declares, checked against ``directory``."""
    return tuple(load_service(name, path, directory)
                 for name, path in service_files(folder).items())


def install(services: tuple[DeclaredService, ...]) -> None:
    """Make these the catalogue's installed services (replacing any installed before)."""
    install_services({s.name: s.actions for s in services})


def load_and_install(folder: Path, directory: Directory) -> tuple[DeclaredService, ...]:
    services = load_services(folder, directory)
    install(services)
    return services


def load_service(name: str, path: Path, directory: Directory) -> DeclaredService:
    raw = _read(path)
    try:
        document = Document.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {json_path(tuple(first['loc']))}: {first['msg']}") from None
    broken = broken_ref(raw)
    if broken is not None:
        raise ConfigError(f"{path}: {json_path(broken[0])}: {broken[1]}")
    listed = directory.services.get(name)
    seen: dict[str, JsonPath] = {}
    shapes: dict[str, str] = {}
    operations: list[DeclaredOperation] = []
    for route, item in document.paths.items():
        _check_route(path, route, shapes)
        for method, operation in item.operations(order=raw["paths"][route]):
            loc: JsonPath = ("paths", route, method)
            op_id = _operation_id(path, loc, operation, seen)
            scope = _scope(path, loc, operation, name, listed.scopes if listed else None)
            operations.append(_declared(name, route, method, op_id, scope, operation,
                                        item.parameters))
    return DeclaredService(name, path, document, raw, tuple(operations))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: $: cannot read: {exc}") from None
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{path}: $: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = (json.loads(text, object_pairs_hook=_unique_keys) if path.name.endswith(".json")
                else parse(text)[0])  # a safe loader, no duplicates, aliases bounded
    except (ValueError, yaml.YAMLError, RecursionError) as exc:  # recursion: nested too deep
        kind = "JSON" if path.name.endswith(".json") else "YAML"
        problem = ("nested too deeply" if isinstance(exc, RecursionError)
                   else getattr(exc, "problem", None) or str(exc).splitlines()[0])
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: $: not valid {kind}: {problem}{line}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: $: an OpenAPI document is a mapping")
    problem = non_json(data)  # YAML's dates, sets, non-string keys...: the mock answers JSON
    if problem is not None:
        raise ConfigError(f"{path}: {json_path(problem[0])}: {problem[1]}")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``json`` would keep the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} twice in one object")
        out[key] = value
    return out


def _check_route(path: Path, route: str, shapes: dict[str, str]) -> None:
    """A route the mock can serve: its parameters well named, each once, and not the same
    route as one checked before (in ``shapes``) but for its parameter names."""
    where = json_path(("paths", route))
    if not route.startswith("/"):
        raise ConfigError(f"{path}: {where}: a path starts with '/'")
    params = _PATH_PARAM.findall(route)
    for index, param in enumerate(params):
        if not _PARAM_NAME.match(param):
            raise ConfigError(f"{path}: {where}: path parameter {{{param}}} must be letters, "
                              "digits and '_'")
        if param in params[:index]:
            raise ConfigError(f"{path}: {where}: path parameter {{{param}}} appears twice")
    shape = _PATH_PARAM.sub("{}", route)
    if shape in shapes:  # OpenAPI forbids it too ("identical" templated paths)
        raise ConfigError(f"{path}: {where}: the same route as "
                          f"{json_path(('paths', shapes[shape]))} but for its parameter names, "
                          "so a request cannot tell which it calls: declare their operations "
                          "under one path")
    shapes[shape] = route


def _operation_id(path: Path, loc: JsonPath, operation: Operation,
                  seen: dict[str, JsonPath]) -> str:
    where = json_path((*loc, "operationId"))
    op_id = operation.operation_id
    if op_id is None:
        raise ConfigError(f"{path}: {where}: missing: every operation needs an operationId "
                          "(workflows name it <service>.<operationId>)")
    if not _OPERATION_ID.match(op_id):
        raise ConfigError(f"{path}: {where}: {op_id!r} must be letters, digits and '_', "
                          "starting with a letter (at most 64)")
    if op_id in seen:
        raise ConfigError(f"{path}: {where}: duplicate operationId {op_id!r}, also at "
                          f"{json_path((*seen[op_id], 'operationId'))}")
    seen[op_id] = loc
    return op_id


def _scope(path: Path, loc: JsonPath, operation: Operation, name: str,
           listed: tuple[str, ...] | None) -> str:
    where = json_path((*loc, "x-required-scope"))
    scope = operation.required_scope
    if scope is None:
        raise ConfigError(f"{path}: {where}: missing: every operation names the scope it "
                          "requires")
    if not is_scope(scope):
        raise ConfigError(f"{path}: {where}: unknown scope {scope!r}: not of the form "
                          "urn:infra:<area>:<verb>")
    if listed is None:
        raise ConfigError(f"{path}: {where}: unknown scope {scope!r}: directory.yaml lists no "
                          f"service {name} (services.{name}.scopes)")
    if scope not in listed:
        raise ConfigError(f"{path}: {where}: unknown scope {scope!r}: not in directory.yaml "
                          f"services.{name}.scopes")
    return scope


def _declared(name: str, route: str, method: str, op_id: str, scope: str,
              operation: Operation, shared: tuple[Parameter, ...]) -> DeclaredOperation:
    path_params = tuple(_PATH_PARAM.findall(route))
    params = {p.name: p for p in (*shared, *operation.parameters)}
    query = tuple((p.name, p.name) for p in params.values() if p.in_ == "query")
    resource = operation.resource or f"{name}:{route}"
    named = [m.group(1) for m in FIELD.finditer(resource)]
    binds = tuple(p for p in path_params if p in named) if operation.resource else path_params
    target = Target(f"{name}.object", path_params) if binds else Target(LISTING)
    action = Action(f"{name}.{op_id}", name, method.upper(), route, scope,
                    operation.audit_action or op_id, resource, operation.summary or op_id,
                    target, query=query)
    return DeclaredOperation(action, operation, binds, shared)
