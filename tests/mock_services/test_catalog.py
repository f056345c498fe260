"""The action catalogue: names, scopes from the directory, and build_request."""

from __future__ import annotations

import re

import pytest

from mock_services import CATALOG, SERVICE_NAMES, build_request, get_action
from orchestrator.catalog import ACTIONS, actions_for, clean_text, resource_for


def test_names_are_unique_and_read_as_service_noun_verb():
    built_in = [a for a in CATALOG.values() if a.service in SERVICE_NAMES]
    assert built_in == list(ACTIONS)  # the rest are declared services' (tests/services)
    for action in ACTIONS:
        assert re.match(r"^[a-z]+\.[a-z0-9_]+\.[a-z_]+$", action.name), action.name
        assert action.name.split(".")[0] == action.service
        assert re.match(r"^[a-z_]+:[a-z_-]+$", action.audit_action), action.audit_action


def test_every_scope_is_one_the_directory_lists_for_the_service(directory):
    for service in SERVICE_NAMES:
        listed = set(directory.services[service].scopes)
        assert {a.scope for a in actions_for(service)} <= listed, service


def test_the_reference_article_verbs_and_the_issue_examples():
    assert get_action("datadog.metrics.query").audit_action == "metrics:query"
    assert get_action("github.comment.create").audit_action == "comment:post"
    assert get_action("github.deployment_status.create").audit_action == "deploy:create"
    assert get_action("aws.ec2.create_tags").audit_action == "tags:create"
    assert get_action("pagerduty.incident.resolve").audit_action == "incident:resolve"
    assert get_action("aws.ec2.terminate_instances").scope == "urn:infra:infrastructure:clean"
    assert get_action("github.branch.delete").scope == "urn:infra:deploy:create"
    assert get_action("datadog.event.create").scope == "urn:infra:monitoring:mute"


def test_actions_sharing_a_route_share_the_scope():
    routes: dict[tuple[str, str], set[str]] = {}
    for action in ACTIONS:
        routes.setdefault((action.method, action.path), set()).add(action.scope)
        if action.match is None:
            assert sum(1 for a in ACTIONS if (a.method, a.path) == (action.method, action.path)) == 1
    assert all(len(scopes) == 1 for scopes in routes.values())


def test_build_request_fills_paths_queries_and_bodies():
    assert build_request("github.comment.create", {
        "owner": "acme", "repo": "service-x", "issue_number": 124, "body": "hi"}) == (
        "POST", "/repos/acme/service-x/issues/124/comments", {}, {"body": "hi"})
    assert build_request("datadog.metrics.query", {"from": 1, "to": 2, "query": "avg:x{}"}) == (
        "GET", "/api/v1/query", {"from": 1, "to": 2, "query": "avg:x{}"}, None)
    assert build_request("pagerduty.incident.resolve", {"id": "P1"}) == (
        "PUT", "/incidents/P1", {}, {"incident": {"type": "incident_reference",
                                                  "status": "resolved"}})
    assert build_request("pagerduty.incident.list", {"statuses": ["triggered"]})[2] == {
        "statuses[]": ["triggered"]}
    method, path, _, body = build_request("github.branch.delete", {
        "owner": "acme", "repo": "service-x", "branch": "feature/a b"})
    assert (method, path, body) == ("DELETE",
                                    "/repos/acme/service-x/git/refs/heads/feature/a%20b", None)
    assert build_request("github.pull.read", {"owner": "a/b", "repo": "r", "pull_number": 1})[
        1] == "/repos/a%2Fb/r/pulls/1"


def test_build_request_refuses_what_it_cannot_build():
    with pytest.raises(KeyError):
        build_request("github.nothing", {})
    with pytest.raises(ValueError, match="owner"):
        build_request("github.pull.read", {"repo": "r", "pull_number": 1})
    with pytest.raises(ValueError, match="bogus"):
        build_request("datadog.event.list", {"start": 1, "end": 2, "bogus": 3})
    with pytest.raises(ValueError, match="content"):
        build_request("pagerduty.note.create", {"id": "P1"})


def test_resources_are_filled_and_never_hold_a_token():
    aws = get_action("aws.ec2.terminate_instances")
    assert resource_for(aws, {}, {"InstanceIds": ["i-1", "i-2"]}) == "aws:ec2:i-1,i-2"
    assert resource_for(aws, {}, None) == "aws:ec2:*"
    pd = get_action("pagerduty.incident.create")
    assert resource_for(pd, {}, {"incident": {"service": {"id": "PSVCX01"}}}) == \
        "pagerduty:service:PSVCX01"
    token_like = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert resource_for(get_action("datadog.metrics.query"), {"query": token_like}, None) == \
        "datadog:query:[redacted]"
    assert clean_text(token_like[:30]) == "[redacted]"
    assert clean_text("a\nb") == "[redacted]"
    assert len(clean_text("x" * 1000)) == 128
