"""The part of an OpenAPI 3 document a declared service uses, as typed models.

Only what the mock serves and checks is modelled: each operation's method, path, ``operationId``,
parameters, request body and responses (their schemas stay JSON Schema objects, validated by
``jsonschema`` when the service runs), and the extensions ``x-required-scope`` (required),
``x-audit-action`` and ``x-resource``. Anything else in the document is kept but not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

METHODS = ("get", "put", "post", "patch", "delete")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JsonPath = tuple[str | int, ...]


def json_path(loc: JsonPath) -> str:
    """``$.paths['/channels'].post['x-required-scope']`` for the key path ``loc``."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}"
        else:
            out += "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class Parameter(_Part):
    name: str = Field(min_length=1, max_length=64)
    in_: Literal["path", "query", "header", "cookie"] = Field(alias="in")
    required: bool = False
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class MediaType(_Part):
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    example: Any = None


class RequestBody(_Part):
    content: dict[str, MediaType] = {}
    required: bool = False

    def json_media(self) -> MediaType | None:
        return self.content.get("application/json")


class Response(_Part):
    description: str = ""
    content: dict[str, MediaType] = {}

    def json_media(self) -> MediaType | None:
        return self.content.get("application/json")


class Operation(_Part):
    operation_id: str | None = Field(None, alias="operationId")
    summary: str = ""
    required_scope: str | None = Field(None, alias="x-required-scope")
    audit_action: str | None = Field(None, alias="x-audit-action",
                                     pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    resource: str | None = Field(None, alias="x-resource", pattern=r"^[!-~]{1,200}$")
    parameters: tuple[Parameter, ...] = ()
    request_body: RequestBody | None = Field(None, alias="requestBody")
    responses: dict[str, Response] = {}

    def success(self) -> tuple[int, Response | None]:
        """The first 2xx response the document declares (201 for a create, 200 otherwise when
        none is declared), and its declaration."""
        for code in sorted(self.responses):
            if code.isdigit() and 200 <= int(code) < 300:
                return int(code), self.responses[code]
        return 200, None


class PathItem(_Part):
    parameters: tuple[Parameter, ...] = ()
    get: Operation | None = None
    put: Operation | None = None
    post: Operation | None = None
    patch: Operation | None = None
    delete: Operation | None = None

    def operations(self, order: Iterable[str] = METHODS) -> Iterator[tuple[str, Operation]]:
        """Each operation, in ``order`` (the document's own, when given its keys)."""
        for method in (m for m in order if m in METHODS):
            operation = getattr(self, method)
            if operation is not None:
                yield method, operation


class Info(_Part):
    title: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)


class Document(_Part):
    openapi: str = Field(pattern=r"^3\.[01]\.\d+$")
    info: Info
    paths: dict[str, PathItem] = Field(min_length=1)
    components: dict[str, Any] = {}
