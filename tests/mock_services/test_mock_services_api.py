"""The public surface of mock_services, and what the app factory refuses."""

from __future__ import annotations

import dataclasses

import pytest

import mock_services
from mock_services import ServiceDeps, create_service_app
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory, MemoryRevocationStore


def test_the_public_surface_is_pinned():
    assert sorted(mock_services.__all__) == sorted([
        "CATALOG", "SERVICE_NAMES", "Action", "Caller", "ServiceDeps", "build_request",
        "create_declared_app", "create_service_app", "fetch_published_keys", "get_action", "remote_key_source",
    ])
    assert mock_services.SERVICE_NAMES == ("datadog", "github", "aws", "pagerduty")
    assert [f.name for f in dataclasses.fields(ServiceDeps)] == [
        "settings", "key_source", "revocation", "directory", "audit", "clock"]


def deps(tmp_path, directory: Directory) -> ServiceDeps:
    from orchestrator.audit import AuditStore

    settings = Settings(state_dir=tmp_path)
    return ServiceDeps(settings, mock_services.remote_key_source(settings),
                       MemoryRevocationStore(), directory, AuditStore(tmp_path / "a.db"))


def test_service_deps_are_frozen_and_unknown_services_refused(tmp_path, directory):
    built = deps(tmp_path, directory)
    try:
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.clock = lambda: 0.0  # type: ignore[misc]
        with pytest.raises(ConfigError, match="unknown service"):
            create_service_app("jenkins", built)
        app = create_service_app("aws", built)
        assert app.state.audience == "http://127.0.0.1:8703"
    finally:
        built.audit.close()


def test_a_directory_that_does_not_list_a_route_scope_is_refused(tmp_path, directory):
    narrowed = directory.model_copy(update={"services": {
        **directory.services,
        "github": directory.services["github"].model_copy(
            update={"scopes": ("urn:infra:repo:read",)})}})
    built = deps(tmp_path, narrowed)
    try:
        with pytest.raises(ConfigError, match="github routes need"):
            create_service_app("github", built)
    finally:
        built.audit.close()
