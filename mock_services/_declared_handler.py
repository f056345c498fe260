"""One declared operation's handler: parameters and body checked against the document, the
generic stateful behaviour (:mod:`mock_services._declared_state`), the answer checked against
the document's success response before it is sent.

A request that breaks the document is 422 ``validation_failed`` naming where (``body.text:
fails required``), never echoing the value. An answer the document's own response schema refuses
is the document's inconsistency, not the caller's: 500 ``response_invalid``, naming the
operation and the keyword; it is checked before anything is kept or deleted, so nothing changes.
A body nested too deeply to be checked (against a recursive schema) is the caller's 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mock_services._access import Caller
from mock_services._bearer import ApiError
from mock_services._bodies import is_json
from mock_services._declared_schemas import Schemas
from mock_services._declared_state import DeclaredState, Shape, Stored, concrete
from mock_services._enforcement import current_caller
from orchestrator.services import DeclaredOperation

Loc = tuple[str | int, ...]
_CASTS: dict[str, Callable[[str], Any]] = {"integer": int, "number": float}


@dataclass(frozen=True)
class _Param:
    name: str
    where: str  # path or query
    required: bool
    loc: Loc | None  # its schema in the document
    kind: str | None


def _invalid(message: str) -> ApiError:
    return ApiError(422, "validation_failed", message)


class OperationHandler:
    def __init__(self, declared: DeclaredOperation, state: DeclaredState,
                 schemas: Schemas) -> None:
        action, operation = declared.action, declared.operation
        self.action, self.state, self.schemas = action, state, schemas
        self.shape = Shape.of(action.path)
        at: Loc = ("paths", action.path, action.method.lower())
        self.params = [
            *self._params(operation.parameters, (*at, "parameters")),
            *self._params(declared.shared, ("paths", action.path, "parameters"))]
        body = operation.request_body
        media = body.json_media() if body is not None else None
        self.body_required = body is not None and body.required
        self.body_loc: Loc | None = ((*at, "requestBody", "content", "application/json",
                                      "schema") if media is not None and media.schema_ else None)
        self.status, response = operation.success()
        answer = response.json_media() if response is not None else None
        self.example = answer.example if answer is not None else None
        self.answer_loc: Loc | None = ((*at, "responses", str(self.status), "content",
                                        "application/json", "schema")
                                       if answer is not None and answer.schema_ else None)
        shape = schemas.resolved(self.answer_loc) if self.answer_loc else {}
        self.answer_type = shape.get("type")
        props = shape.get("properties")
        self.fields = frozenset(props) if isinstance(props, Mapping) else None
        self.list_field = next((k for k, v in (props or {}).items()
                                if isinstance(v, Mapping) and v.get("type") == "array"), None)

    def _params(self, declared: Any, at: Loc) -> list[_Param]:
        out = []
        for index, p in enumerate(declared):
            if p.in_ not in ("path", "query"):
                continue
            loc = (*at, index, "schema") if p.schema_ else None
            kind = self.schemas.resolved(loc).get("type") if loc else None
            out.append(_Param(p.name, p.in_, p.required or p.in_ == "path", loc,
                              kind if isinstance(kind, str) else None))
        return out

    def endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return self.answer(*self.act(request, await current_caller(request)))

        return handle

    def act(self, request: Request, caller: Caller) -> tuple[int, Any]:
        values = dict(request.path_params)
        self._check_params(request)
        body = self._body(request)
        collection = concrete(self.shape.collection, values)
        method = self.action.method
        if self.shape.item is None:
            if method == "POST":
                return self.status, self._create(collection, values, body, caller)
            if method == "GET":
                return self.status, self._list(collection, request, caller)
            return self.status, self.example
        key = str(values[self.shape.item])
        stored = self.state.get(collection, key)
        if method == "PUT":
            data = self._checked({**self._fields(values), **(body or {}),
                                  **self._identity(key, stored)})
            if stored is None:
                return self.status, self.state.put(collection, key, data, caller.ctx).data
            return self.status, self.state.replace(collection, key, data).data
        if stored is None:
            raise ApiError(404, "not_found", f"no {self.state.resource(collection, key)}")
        if method == "GET":
            return self.status, stored.data
        if method == "PATCH":
            merged = self._checked({**stored.data, **(body or {}), **self._identity(key, stored)})
            return self.status, self.state.replace(collection, key, merged).data
        if method == "DELETE":
            answer = self._checked(self.example) if self.example is not None else None
            self.state.delete(collection, key)
            return self.status, answer
        return self.status, self.example if self.example is not None else stored.data

    def answer(self, status: int, payload: Any) -> Response:
        if payload is None:
            return Response(status_code=status)
        return JSONResponse(self._checked(payload), status_code=status)

    def _checked(self, payload: Any) -> Any:
        """``payload`` if the document's success response takes it (checked before anything is
        kept, so a refused answer changes nothing)."""
        if self.answer_loc is not None:
            try:
                problem = self.schemas.problem(self.answer_loc, payload, "response")
            except RecursionError:  # a schema that refers to itself without end
                problem = "response: cannot be checked, its schema recurses without end"
            if problem is not None:
                raise ApiError(500, "response_invalid",
                               f"{self.action.name}: the mock's answer breaks the document's "
                               f"{self.status} response: {problem}", error="server_error")
        return payload

    def _check_params(self, request: Request) -> None:
        for p in self.params:
            raw = (request.path_params if p.where == "path" else request.query_params).get(p.name)
            if raw is None:
                if p.required:
                    raise _invalid(f"{p.where}.{p.name}: missing")
                continue
            try:
                value = _CASTS[p.kind](raw) if p.kind in _CASTS else raw
            except ValueError:
                raise _invalid(f"{p.where}.{p.name}: not {p.kind}") from None
            if p.kind == "boolean":
                value = {"true": True, "false": False}.get(raw, raw)
            problem = self.schemas.problem(p.loc, value, f"{p.where}.{p.name}") if p.loc else None
            if problem is not None:
                raise _invalid(problem)

    def _body(self, request: Request) -> dict[str, Any] | None:
        parsed = getattr(request, "_json", None) if is_json(
            request.headers.get("content-type")) else None
        if parsed is None:
            if self.body_required:
                raise _invalid("body: a JSON body is required")
            return None
        if self.body_loc is not None:
            problem = self.schemas.problem(self.body_loc, parsed, "body")
            if problem is not None:
                raise _invalid(problem)
        if not isinstance(parsed, dict):
            raise _invalid("body: the mock keeps JSON objects")
        return parsed

    def _fields(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The path parameters the answer's schema has fields for (all, with no schema)."""
        return {k: v for k, v in values.items() if self.fields is None or k in self.fields}

    def _identity(self, key: str, stored: Stored | None) -> dict[str, Any]:
        """The ``id`` an object under ``key`` reads back with, as POST gives it: the one it
        has, or (if the answer has an ``id`` field, or no schema) the key, typed as its path
        parameter is declared; a body cannot change it."""
        if stored is not None and "id" in stored.data:
            return {"id": stored.data["id"]}
        if self.fields is not None and "id" not in self.fields:
            return {}
        kind = next((p.kind for p in self.params if p.name == self.shape.item), None)
        return {"id": _CASTS[kind](key) if kind in _CASTS else key}

    def _create(self, collection: str, values: Mapping[str, Any], body: dict[str, Any] | None,
                caller: Caller) -> dict[str, Any]:
        example = self.example if isinstance(self.example, dict) else {}
        data = {**example, **self._fields(values), **(body or {})}
        given = (body or {}).get("id")
        fresh = not isinstance(given, str | int) or isinstance(given, bool)
        key = self.state.next_key(collection) if fresh else str(given)
        if self.state.get(collection, key) is not None:
            raise ApiError(409, "conflict", f"{self.state.resource(collection, key)} exists")
        if self.fields is None or "id" in self.fields:
            data["id"] = key if fresh else given
        checked = self._checked(data)  # before the new key is taken: a refusal changes nothing
        if fresh:
            self.state.take_key(key)
        return self.state.put(collection, key, checked, caller.ctx).data

    def _list(self, collection: str, request: Request, caller: Caller) -> Any:
        if collection not in self.state.collections and self.example is not None:
            return self.example  # nothing kept here yet: the document's own example
        wanted = {p.name: request.query_params[p.name] for p in self.params
                  if p.where == "query" and p.name in request.query_params}
        items = [s.data for s in self.state.listing(collection) if caller.sees(s.owners)
                 and all(str(s.data.get(k)) == v for k, v in wanted.items())]
        if self.answer_type == "object" and self.list_field is not None:
            return {self.list_field: items}
        return items

