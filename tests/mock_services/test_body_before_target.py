"""A body of the wrong shape, on a route whose target is named in the body, is answered as its
schema error (422 ``validation_failed``), not as a 403 from a target check that read nothing; a
well-formed body still meets the target check."""

from __future__ import annotations

from typing import Any

import pytest

EVENTS = "/api/v1/events"
TAGS = ["service:service-x", "env:prod"]


@pytest.mark.parametrize(("service", "path", "send"), [
    ("datadog", EVENTS, {"json": [{"title": "x", "tags": TAGS}]}),
    ("datadog", EVENTS, {"data": {"title": "x", "tags": "env:prod"}}),
    ("datadog", EVENTS, {"content": b'{"title": "x", "tags": ["service:service-x", "env:prod"]}',
                         "headers": {"Content-Type": ""}}),
    ("datadog", EVENTS, {"content": b"", "headers": {"Content-Type": "application/json"}}),
    ("datadog", EVENTS, {"json": {"title": "x", "tags": 5}}),
    ("datadog", EVENTS, {"json": {"tags": TAGS}}),
    ("aws", "/monitoring/PutMetricAlarm", {"json": ["alarm"]}),
    ("aws", "/ec2/CreateTags", {"json": {"Resources": "i-0a1b2c3d4e5f60001", "Tags": []}}),
    ("pagerduty", "/incidents", {"json": [1]}),
], ids=["json array", "form body", "no content type", "empty", "tags not a list",
        "no title", "aws array", "aws resources not a list", "pagerduty array"])
def test_a_malformed_body_is_422_not_403(stack, http, service: str, path: str,
                                         send: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {stack.token(service)}", **send.pop("headers", {})}
    if headers.get("Content-Type") == "":
        del headers["Content-Type"]
    response = http.post(stack.urls[service] + path, headers=headers, **send)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["reason"]) == ("invalid_request", "validation_failed")
    assert body["fields"] and all(f["loc"][0] == "body" for f in body["fields"])
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", "validation_failed", 422)


@pytest.mark.parametrize(("tags", "reason"), [
    (["service:service-x", "env:staging"], "environment_mismatch"),
    ([], "environment_mismatch"),  # no tags: an event about the whole fleet
])
def test_a_well_formed_body_still_meets_the_target_check(stack, http, tags, reason) -> None:
    response = stack.call(http, "datadog.event.create", {"title": "x", "tags": tags})
    assert (response.status_code, response.json()["reason"]) == (403, reason)
