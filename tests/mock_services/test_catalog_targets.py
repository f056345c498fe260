"""The catalogue's target declarations: every route that names a resource says how its owner
is found, every service resolves the kinds its routes name, and a route whose target cannot be
resolved is refused when the app is built."""

from __future__ import annotations

import typing

import pytest
from _examples import EXAMPLES
from fastapi import FastAPI
from pydantic import BaseModel

from mock_services import SERVICE_NAMES
from mock_services._enforcement import EnforcedRoute
from mock_services._routing import ServiceRouter
from orchestrator.catalog import ACTIONS, LISTING, actions_for, build_request, get_action
from orchestrator.errors import ConfigError

# The only actions that name no resource: each shows only what the caller's context owns
# (test_resource_binding.py::test_listings_show_only_what_the_context_owns).
LISTINGS = {"datadog.event.list", "aws.cloudwatch.describe_alarms", "pagerduty.incident.list"}


def _body_model(route: EnforcedRoute) -> type[BaseModel] | None:
    for param in route.dependant.body_params:
        annotation = param.field_info.annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def test_every_action_that_names_a_resource_declares_its_target():
    assert {a.name for a in ACTIONS if a.target.listing} == LISTINGS
    assert set(EXAMPLES) == {a.name for a in ACTIONS}
    for action in ACTIONS:
        assert action.target.kind.split(".")[0] in (action.service, LISTING), action.name
        if not action.target.listing:
            assert action.target.fields, action.name


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_target_field_is_one_the_route_reads(stack, service):
    routes = [r for r in stack.apps[service].routes if isinstance(r, EnforcedRoute)]
    assert {a.name for r in routes for a in r.actions} == {a.name for a in actions_for(service)}
    for route in routes:
        action = route.actions[0]
        if action.target.listing:
            assert route.resolve is None
            continue
        assert route.resolve is not None, action.name
        model = _body_model(route)
        for field in action.target.fields:
            top = field.split(".")[0]
            known = top in action.path_params or top in dict(action.query) or (
                model is not None and top in model.model_fields)
            assert known, f"{action.name} names its target by {field}, which it never reads"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_each_example_names_a_resource_its_resolver_finds(stack, service):
    """The resolvers read the same names the handlers do: the example of every non-listing
    action resolves to at least one owned resource."""
    for route in stack.apps[service].routes:
        if not isinstance(route, EnforcedRoute) or route.resolve is None:
            continue
        action = route.actions[0]
        params = EXAMPLES[action.name]
        _, _, query, body = build_request(action.name, params)
        values = {**{k: str(v) for k, v in params.items() if k in action.path_params}, **query}
        found = route.resolve(action.target.values(values, body))
        assert found, action.name


def test_a_route_whose_target_is_not_resolved_is_refused_at_build():
    router = ServiceRouter(FastAPI(), "aws", enforcer=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="terminate_instances acts on a aws.instance, which "
                                          "aws does not resolve"):
        router.route("aws.ec2.terminate_instances")(lambda: None)
    router.resolves("aws.instance")(lambda named: [])
    router.route("aws.ec2.terminate_instances")(lambda: None)
    with pytest.raises(ConfigError, match="resolves aws.instance twice"):
        router.resolves("aws.instance")(lambda named: [])


def test_a_listing_needs_no_resolver():
    router = ServiceRouter(FastAPI(), "pagerduty", enforcer=None)  # type: ignore[arg-type]
    router.route("pagerduty.incident.list")(lambda: None)
    assert get_action("pagerduty.incident.list").target.listing
