"""What is audited is what is done: the enforcement layer parses the body once, with the same
media-type test as the handler's, and hands the handler that parsed object. A media type that
differs only in letter case was executed by the handler but audited as another action and
resource."""

from __future__ import annotations

import json

import pytest
from _examples import SEEDED_INCIDENTS

UPDATE = {"incident": {"type": "incident_reference", "status": "resolved"}}
CREATE = {"incident": {"type": "incident", "title": "slow",
                       "service": {"id": "PSVCX01", "type": "service_reference"}}}


@pytest.mark.parametrize("media_type", ["Application/JSON", "APPLICATION/JSON; charset=UTF-8",
                                        "application/vnd.pagerduty+JSON"])
def test_the_audit_records_the_action_and_resource_the_handler_performed(
        stack_factory, http, media_type):
    stack = stack_factory(services=("pagerduty",))
    headers = {"Authorization": f"Bearer {stack.token('pagerduty')}",
               "Content-Type": media_type}
    url = stack.urls["pagerduty"]
    resolved = http.put(url + "/incidents/P7X9K2Q", content=json.dumps(UPDATE), headers=headers)
    assert resolved.status_code == 200 and resolved.json()["incident"]["status"] == "resolved"
    [record] = stack.records(resolved)
    assert (record.action, record.resource) == ("incident:resolve", "pagerduty:incident:P7X9K2Q")
    created = http.post(url + "/incidents", content=json.dumps(CREATE), headers=headers)
    assert created.status_code == 201
    [record] = stack.records(created)
    assert (record.action, record.resource) == ("incident:create", "pagerduty:service:PSVCX01")


def test_a_body_that_is_not_json_is_not_json_to_either(stack_factory, http):
    stack = stack_factory(services=("pagerduty",))
    headers = {"Authorization": f"Bearer {stack.token('pagerduty')}",
               "Content-Type": "text/json"}
    response = http.post(stack.urls["pagerduty"] + "/incidents", content=json.dumps(CREATE),
                         headers=headers)
    assert (response.status_code, response.json()["reason"]) == (422, "validation_failed")
    [record] = stack.records(response)
    assert record.resource == "pagerduty:service:*"
    assert list(stack.apps["pagerduty"].state.service.incidents) == SEEDED_INCIDENTS


def test_a_target_named_in_an_odd_case_body_is_still_checked(stack_factory, http):
    """The resource check reads the same parse: a prod incident resolved with a staging token
    in an ``Application/JSON`` body is refused and stays triggered."""
    stack = stack_factory(services=("pagerduty",))
    token = stack.token("pagerduty", ctx={"environment": "staging"})
    created = http.post(stack.urls["pagerduty"] + "/incidents", content=json.dumps(CREATE),
                        headers={"Authorization": f"Bearer {token}",
                                 "Content-Type": "Application/JSON"})
    assert (created.status_code, created.json()["reason"]) == (403, "environment_mismatch")
    assert list(stack.apps["pagerduty"].state.service.incidents) == SEEDED_INCIDENTS
