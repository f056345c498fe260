"""Resources carry their owners and every service checks them against the token's ``ctx``
before the handler acts, over real HTTP: exact status and reason, both values in the audit
record, and nothing acted on, including a request naming several resources, one of them out of
bounds. Listings show only what the caller's context owns."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _examples import (
    CANARY,
    EXAMPLES,
    REPO,
    SEEDED_INCIDENTS,
    STAGING_X,
    STAGING_Y,
    WEB1,
    WEB2,
)

from orchestrator.catalog import get_action
from orchestrator.identity import Context, ResourceAttributes

STAGING_CI = {"environment": "staging"}
SERVICE_Y = {"repository": "acme/service-y"}


def refused(stack: Any, response: httpx.Response, reason: str, attribute: str, claimed: str,
            actual: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["error"], body["reason"]) == ("insufficient_scope", reason)
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", reason, 403)
    assert record.context[f"claimed.{attribute}"] == claimed
    assert record.context[f"target.{attribute}"] == actual


@pytest.fixture
def world(stack_factory: Any) -> Any:
    return stack_factory()


def state(stack: Any, service: str) -> Any:
    return stack.apps[service].state.service


def test_a_staging_run_cannot_terminate_a_prod_instance(world, http):
    response = world.call(http, "aws.ec2.terminate_instances", {"InstanceIds": [CANARY]},
                          ctx=STAGING_CI)
    refused(world, response, "environment_mismatch", "environment", "staging", "prod")
    [record] = world.records(response)
    assert record.context["environment"] == "staging"  # the token's own ctx, as claimed
    assert record.context["target.resource"] == f"aws:ec2:{CANARY}"
    aws = state(world, "aws")
    assert aws.instances[CANARY].State.Name == "running" and aws.changes == []


def test_one_resource_out_of_bounds_refuses_the_whole_request(world, http):
    aws = state(world, "aws")
    before = {i: (s.State, s.Tags) for i, s in aws.instances.items()}
    both = world.call(http, "aws.ec2.terminate_instances", {"InstanceIds": [STAGING_X, WEB1]},
                      ctx=STAGING_CI)
    refused(world, both, "environment_mismatch", "environment", "staging", "prod")
    tags = world.call(http, "aws.ec2.create_tags", {
        "Resources": [STAGING_X, STAGING_Y], "Tags": [{"Key": "k", "Value": "v"}]},
        ctx=STAGING_CI)
    refused(world, tags, "service_mismatch", "service", "service-x", "service-y")
    assert {i: (s.State, s.Tags) for i, s in aws.instances.items()} == before
    assert aws.changes == []
    own = world.call(http, "aws.ec2.terminate_instances", {"InstanceIds": [STAGING_X]},
                     ctx=STAGING_CI)
    assert own.status_code == 200 and aws.instances[STAGING_X].State.Name == "terminated"


def test_a_service_x_run_cannot_touch_service_y(world, http):
    response = world.call(http, "pagerduty.incident.create",
                          {"title": "y is slow", "service_id": "PSVCY02"})
    refused(world, response, "service_mismatch", "service", "service-x", "service-y")
    assert list(state(world, "pagerduty").incidents) == SEEDED_INCIDENTS
    comment = world.call(http, "github.comment.create",
                         {"owner": "acme", "repo": "service-y", "issue_number": 124,
                          "body": "x"})
    refused(world, comment, "repository_mismatch", "repository", "acme/service-x",
            "acme/service-y")
    other = world.call(http, "github.pull.read", {**REPO, "pull_number": 124}, ctx=SERVICE_Y)
    refused(world, other, "repository_mismatch", "repository", "acme/service-y",
            "acme/service-x")


def test_every_service_refuses_a_staging_token_on_its_prod_resources(world, http):
    for name in ("datadog.monitor.mute", "github.deployment_status.create",
                 "aws.ec2.create_tags", "pagerduty.incident.resolve", "pagerduty.note.create",
                 "datadog.monitor.read", "aws.cloudwatch.get_metric_data"):
        response = world.call(http, name, EXAMPLES[name], ctx=STAGING_CI)
        refused(world, response, "environment_mismatch", "environment", "staging", "prod")
    assert state(world, "pagerduty").incidents["P7X9K2Q"].status == "triggered"
    assert list(state(world, "github").statuses[("acme", "service-x", 9001)]) == []
    assert state(world, "datadog").monitors[1002].options.silenced == {}
    assert state(world, "aws").changes == []


def test_a_query_or_event_that_names_no_environment_is_owned_by_none(world, http):
    query = world.call(http, "datadog.metrics.query",
                       {"from": 0, "to": 600, "query": "avg:latency{service:service-x}"})
    refused(world, query, "environment_mismatch", "environment", "prod", "*")
    spread = world.call(http, "datadog.metrics.query", {
        "from": 0, "to": 600, "query": "avg:latency{service:service-y,service:service-x,"
                                       "env:prod}"})
    refused(world, spread, "service_mismatch", "service", "service-x", "*")
    event = world.call(http, "datadog.event.create", {"title": "t", "tags": ["env:prod"]})
    refused(world, event, "service_mismatch", "service", "service-x", "*")
    fleet = world.call(http, "aws.cloudwatch.put_metric_alarm",
                       {**EXAMPLES["aws.cloudwatch.put_metric_alarm"], "Dimensions": []})
    refused(world, fleet, "environment_mismatch", "environment", "prod", "*")
    assert len(state(world, "datadog").events) == 0 and len(state(world, "aws").alarms) == 0


def test_an_instance_cannot_be_retagged_into_another_owner(world, http):
    for name, params in (
        ("aws.ec2.create_tags", {"Resources": [WEB2], "Tags": [{"Key": "env",
                                                                "Value": "staging"}]}),
        ("aws.ec2.delete_tags", {"Resources": [WEB2], "Tags": [{"Key": "service"}]}),
    ):
        response = world.call(http, name, params)
        assert (response.status_code, response.json()["reason"]) == (400, "owner_tag_immutable")
    everything = world.call(http, "aws.ec2.delete_tags", {"Resources": [WEB2]})
    assert everything.status_code == 200
    assert state(world, "aws").tags(WEB2) == {"service": "service-x", "env": "prod"}


def test_listings_show_only_what_the_context_owns(world, http):
    seen = world.call(http, "aws.ec2.describe_instances", {}, ctx=STAGING_CI).json()
    ids = {i["InstanceId"] for r in seen["Reservations"] for i in r["Instances"]}
    assert ids == {STAGING_X}
    incidents = world.call(http, "pagerduty.incident.list", {}, ctx=STAGING_CI).json()
    assert [i["id"] for i in incidents["incidents"]] == ["PSTG4X1"]
    prod = world.call(http, "pagerduty.incident.list", {}).json()
    assert [i["id"] for i in prod["incidents"]] == ["P7X9K2Q"]
    world.call(http, "aws.cloudwatch.put_metric_alarm", EXAMPLES["aws.cloudwatch.put_metric_alarm"])
    alarms = world.call(http, "aws.cloudwatch.describe_alarms", {}, ctx=STAGING_CI).json()
    assert alarms["MetricAlarms"] == []
    world.call(http, "datadog.event.create", EXAMPLES["datadog.event.create"])
    events = world.call(http, "datadog.event.list", EXAMPLES["datadog.event.list"],
                        ctx=STAGING_CI).json()
    assert events["events"] == []


def test_the_staging_twins_serve_a_staging_run(world, http):
    staging = {"ctx": STAGING_CI}
    assert world.call(http, "datadog.monitor.mute", {"monitor_id": 1101}, **staging) \
        .status_code == 200
    status = world.call(http, "github.deployment_status.create",
                        {**REPO, "deployment_id": 9002, "state": "success"}, **staging)
    assert status.status_code == 201 and status.json()["environment"] == "staging"
    incident = world.call(http, "pagerduty.incident.create",
                          {"title": "staging is slow", "service_id": "PSVCXS1"}, **staging)
    assert incident.status_code == 201


def test_the_context_rules_hold_in_the_targets_environment(directory):
    manual = Context(trigger="manual", environment="prod", repository="acme/service-x",
                     commit="c", run_id="r")
    clean = get_action("aws.ec2.terminate_instances").scope
    unowned = ResourceAttributes(resource="github:acme/service-x", repository="acme/service-x")
    refusal = directory.target_refusal(clean, manual, unowned)
    assert refusal is not None and (refusal.reason, refusal.claimed, refusal.actual) == (
        "context_forbidden", "manual", "ci_pipeline")
    staging = manual.model_copy(update={"environment": "staging"})
    prod = ResourceAttributes(resource="aws:ec2:i-1", environment="prod", service="service-x")
    refusal = directory.target_refusal(clean, staging, prod)
    assert refusal is not None and (refusal.reason, refusal.claimed, refusal.actual) == (
        "environment_mismatch", "staging", "prod")
    assert directory.target_refusal(clean, staging, unowned) is None


def test_a_query_parameter_cannot_stand_in_for_the_body_field_it_copies(world, http):
    """The handler reads InstanceIds from the body; a decoy of the same name in the query
    string names nothing the check reads, so the prod instance in the body is still checked."""
    token = world.token("aws", ctx=STAGING_CI)
    response = http.post(world.urls["aws"] + "/ec2/TerminateInstances",
                         params={"InstanceIds": "i-00000000000000000"},
                         json={"InstanceIds": [CANARY]},
                         headers={"Authorization": f"Bearer {token}"})
    refused(world, response, "environment_mismatch", "environment", "staging", "prod")
    [record] = world.records(response)
    assert record.resource == f"aws:ec2:{CANARY}"  # the audit names what the body names
    assert state(world, "aws").instances[CANARY].State.Name == "running"


# Zero-padded past 64 characters: the check once read only the first 64 (100, no monitor) while
# the handler read all of them (1001).
PADDED = ["0" * 61 + "1001", "0" * 1000 + "1001"]


@pytest.mark.parametrize("spelling", ["+1001", "1_001", "%201001", *PADDED])
def test_an_id_spelt_as_the_handler_still_reads_it_is_checked(world, http, spelling):
    """A path id the handler's validation reads as 1001 (a prod monitor) is 1001 to the check
    too: no spelling skips it."""
    token = world.token("datadog", ctx=STAGING_CI)
    before = state(world, "datadog").monitors[1001]
    response = http.post(f"{world.urls['datadog']}/api/v1/monitor/{spelling}/mute",
                         json={"scope": "host:web-1", "end": 5000},
                         headers={"Authorization": f"Bearer {token}"})
    refused(world, response, "environment_mismatch", "environment", "staging", "prod")
    assert state(world, "datadog").monitors[1001] == before


@pytest.mark.parametrize("zeros", [61, 1000])
def test_a_padded_deployment_id_is_checked_as_the_deployment_it_names(world, http, zeros):
    """A staging token cannot write a status on prod deployment 9001 by padding its id."""
    token = world.token("github", ctx=STAGING_CI)
    response = http.post(
        f"{world.urls['github']}/repos/acme/service-x/deployments/{'0' * zeros}9001/statuses",
        json={"state": "success"}, headers={"Authorization": f"Bearer {token}"})
    refused(world, response, "environment_mismatch", "environment", "staging", "prod")
    assert list(state(world, "github").statuses[("acme", "service-x", 9001)]) == []


def test_a_repository_named_past_100_characters_is_checked_whole(world, http):
    """The check once read each part's first 100 characters, so a repository the token does
    not own, whose name begins like one it does, was checked as the one it does."""
    owned = {"repository": "o" * 100 + "/r"}
    token = world.token("github", ctx=owned)
    response = http.get(f"{world.urls['github']}/repos/{'o' * 100}X/r/pulls/124",
                        headers={"Authorization": f"Bearer {token}"})
    refused(world, response, "repository_mismatch", "repository", owned["repository"],
            "o" * 100 + "X/r")
