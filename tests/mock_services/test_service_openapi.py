"""Each service's /openapi.json names every route's scope, and it matches the catalogue."""

from __future__ import annotations

import re

import pytest

from mock_services import SERVICE_NAMES
from orchestrator.catalog import actions_for

METHODS = {"get", "post", "put", "delete", "patch"}


def openapi_path(template: str) -> str:
    return re.sub(r":path\}", "}", template)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_route_names_its_scope_and_it_matches_the_catalogue(stack, http, service):
    response = http.get(stack.urls[service] + "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    operations = {(path, method): op for path, item in document["paths"].items()
                  for method, op in item.items() if method in METHODS}
    assert operations
    for (path, method), op in operations.items():
        scope = op["x-required-scope"]
        assert op["security"] == [{"delegated_token": [scope]}], (path, method)
        assert op["x-actions"], (path, method)
    covered = set()
    for action in actions_for(service):
        op = operations[(openapi_path(action.path), action.method.lower())]
        assert op["x-required-scope"] == action.scope, action.name
        assert op["security"] == [{"delegated_token": [action.scope]}]
        named = {a["name"]: a for a in op["x-actions"]}
        assert named[action.name]["audit_action"] == action.audit_action
        covered.add((openapi_path(action.path), action.method.lower()))
    assert covered == set(operations), "a route the catalogue does not list"
    scheme = document["components"]["securitySchemes"]["delegated_token"]
    assert scheme["type"] == "oauth2"
    assert set(scheme["flows"]["clientCredentials"]["scopes"]) == {
        a.scope for a in actions_for(service)}
    assert document["servers"] == [{"url": stack.urls[service]}]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_mutating_routes_document_the_idempotency_key_and_bodies(stack, http, service):
    document = http.get(stack.urls[service] + "/openapi.json").json()
    for action in actions_for(service):
        op = document["paths"][openapi_path(action.path)][action.method.lower()]
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        assert ("Idempotency-Key" in headers) == action.mutating, action.name
        assert {"401", "403", "503"} <= set(op["responses"])
        if action.method in ("POST", "PUT"):
            assert "requestBody" in op, action.name


def test_openapi_is_public_and_not_audited(stack, http):
    before = len(stack.audit.query(service="github"))
    assert http.get(stack.urls["github"] + "/openapi.json").status_code == 200
    assert len(stack.audit.query(service="github")) == before
