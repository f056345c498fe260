"""Bad input never produces a 5xx: malformed JSON, wrong types, bad path parameters, odd
content types, oversized bodies. Every one is answered 4xx with a reason and audited."""

from __future__ import annotations

from typing import Any

import pytest

JSON = {"Content-Type": "application/json"}
OWNED = "avg:latency{service:service-x,env:prod}"  # a query the default token's context owns
# (service, method, path, raw body or None, extra headers, expected status, expected reason)
CASES: list[tuple[str, str, str, bytes | None, dict[str, str], int, str]] = [
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b'{"body": ', JSON, 400,
     "malformed_json"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b'{"body": 5}', JSON, 422,
     "validation_failed"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b'["body"]', JSON, 422,
     "validation_failed"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b'{"body": "x", "z": 1}',
     JSON, 422, "validation_failed"),
    ("github", "POST", "/repos/acme/service-x/issues/abc/comments", b'{"body": "x"}', JSON, 422,
     "validation_failed"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b'{"body": "x"}',
     {"Content-Type": "text/plain"}, 422, "validation_failed"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b"\xff\xfe\x00\x01", JSON,
     400, "malformed_json"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b"[" * 30000 + b"]" * 30000,
     JSON, 400, "malformed_json"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b"x" * 70000, JSON, 413,
     "body_too_large"),
    ("github", "GET", "/repos/acme/service-x/pulls/99999999999999999999999999", None, {}, 400,
     "number_out_of_range"),
    ("github", "GET", "/repos/acme/service-x/pulls/-1", None, {}, 400, "number_out_of_range"),
    ("github", "GET", "/repos/acme/service-x/pulls/99999", None, {}, 404, "not_found"),
    ("github", "POST", "/repos/acme/service-x/deployments/9001/statuses",
     b'{"state": "exploded"}', JSON, 422, "validation_failed"),
    ("datadog", "GET", "/api/v1/query?from=x&to=2&query=" + OWNED, None, {}, 422,
     "validation_failed"),
    ("datadog", "GET", "/api/v1/query?to=2", None, {}, 422, "validation_failed"),
    ("datadog", "GET", "/api/v1/query?from=10&to=5&query=" + OWNED, None, {}, 400,
     "invalid_time_range"),
    ("datadog", "GET", "/api/v1/query?from=0&to=1" + "0" * 40 + "&query=" + OWNED, None, {}, 400,
     "number_out_of_range"),
    ("datadog", "GET", "/api/v1/query?from=0&to=" + str(7 * 86400 + 1) + "&query=" + OWNED,
     None, {}, 400, "invalid_time_range"),
    ("datadog", "GET", "/api/v1/query?from=1&to=20&query=drop%20table", None, {}, 400,
     "invalid_query"),
    ("datadog", "GET", "/api/v1/monitor/1e5", None, {}, 422, "validation_failed"),
    ("datadog", "GET", "/api/v1/monitor/%00", None, {}, 422, "validation_failed"),
    ("datadog", "POST", "/api/v1/monitor/1001/mute", b'{"end": "soon"}', JSON, 422,
     "validation_failed"),
    ("datadog", "POST", "/api/v1/events", (b'{"title": "", "tags": ["service:service-x", '
     b'"env:prod"]}'), JSON, 422, "validation_failed"),
    ("github", "POST", "/repos/acme/service-x/issues/124/comments", b"null", JSON, 422,
     "validation_failed"),
    ("aws", "POST", "/ec2/TerminateInstances", b'{"InstanceIds": []}', JSON, 422,
     "validation_failed"),
    ("aws", "POST", "/ec2/TerminateInstances", b'{"InstanceIds": ["../../x"]}', JSON, 400,
     "instance_id_malformed"),
    ("aws", "POST", "/ec2/CreateTags", (b'{"Resources": ["i-00000000000000000"], "Tags": '
      b'[{"Key": "a"}]}'), JSON, 400, "instance_not_found"),
    ("aws", "POST", "/ec2/DescribeInstances", b'{"Filters": [{"Name": "bogus", "Values": []}]}',
     JSON, 400, "invalid_filter"),
    ("aws", "POST", "/monitoring/GetMetricData", (b'{"MetricDataQueries": [], "StartTime": 1,'
      b' "EndTime": 2}'), JSON, 422, "validation_failed"),
    ("aws", "POST", "/monitoring/PutMetricAlarm", (b'{"AlarmName": "a", "Dimensions": [{"Name": '
     b'"InstanceId", "Value": "i-0a1b2c3d4e5f60001"}]}'), JSON, 422,
     "validation_failed"),
    ("aws", "POST", "/ec2/Nope", b"{}", JSON, 404, "not_found"),
    ("aws", "POST", "/?Action=../../etc", b"{}", JSON, 404, "not_found"),
    ("aws", "POST", "/", b"{}", {**JSON, "X-Amz-Target": "AmazonEC2.../x"}, 404, "not_found"),
    ("pagerduty", "PUT", "/incidents/P7X9K2Q", (b'{"incident": {"type": "incident_reference",'
      b' "status": "triggered"}}'), JSON, 422, "validation_failed"),
    ("pagerduty", "POST", "/incidents", (b'{"incident": {"type": "incident", "title": "t", '
      b'"service": {"id": "lowercase"}}}'), JSON, 422, "validation_failed"),
    ("pagerduty", "POST", "/incidents", (b'{"incident": {"type": "incident", "title": "t", '
      b'"service": {"id": "PNOPE99"}}}'), JSON, 404, "not_found"),
    ("pagerduty", "GET", "/incidents?statuses[]=exploded", None, {}, 422, "validation_failed"),
    ("pagerduty", "GET", "/incidents?limit=100000", None, {}, 400, "number_out_of_range"),
    ("pagerduty", "POST", "/incidents/NOPE/notes", b'{"note": {"content": "x"}}', JSON, 404,
     "not_found"),
]


@pytest.mark.parametrize("service, method, path, body, headers, status, reason", CASES)
def test_bad_input_is_a_4xx_with_a_reason(stack, http, service, method, path, body, headers,
                                          status, reason):
    sent: dict[str, Any] = {**headers, "Authorization": f"Bearer {stack.token(service)}"}
    response = http.request(method, stack.urls[service] + path, content=body, headers=sent)
    assert (response.status_code, response.json()["reason"]) == (status, reason), response.text
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", reason, status)


def test_validation_errors_name_fields_but_never_echo_input(stack, http):
    secret = "s3cr3t-value-never-echoed"
    response = http.post(stack.urls["github"] + "/repos/acme/service-x/issues/124/comments",
                         json={"body": 1, "extra": secret},
                         headers={"Authorization": f"Bearer {stack.token('github')}"})
    assert response.status_code == 422
    assert secret not in response.text
    assert {tuple(f["loc"]) for f in response.json()["fields"]} == {("body", "body"),
                                                                    ("body", "extra")}


def test_no_bad_input_reached_the_last_resort_handler(stack):
    assert not [r for r in stack.audit.query() if r.status is None or r.status >= 500]


def test_an_unexpected_failure_is_a_json_500_and_audited(stack_factory, http):
    stack = stack_factory(services=("datadog",))
    stack.apps["datadog"].state.service.monitors = None  # the handler will raise TypeError
    response = stack.call(http, "datadog.monitor.read", {"monitor_id": 1001})
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "error_description": "internal error",
                               "reason": "internal_error"}
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.on_behalf_of) == ("deny", "internal_error",
                                                                     "user:sam")


def test_a_chunked_body_is_bounded_as_it_arrives(stack, http):
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = http.post(stack.urls["github"] + "/repos/acme/service-x/issues/124/comments",
                         content=chunks(), headers={
                             "Authorization": f"Bearer {stack.token('github')}",
                             "Content-Type": "application/json"})
    assert (response.status_code, response.json()["reason"]) == (413, "body_too_large")
    chunked = http.post(stack.urls["github"] + "/repos/acme/service-x/issues/124/comments",
                        content=iter([b'{"body": ', b'"chunked"}']), headers={
                            "Authorization": f"Bearer {stack.token('github')}",
                            "Content-Type": "application/json"})
    assert chunked.status_code == 201 and chunked.json()["body"] == "chunked"
