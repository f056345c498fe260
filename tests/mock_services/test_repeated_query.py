"""A query parameter a route takes once, sent twice, is refused 422 ``repeated_parameter`` and
audited, never taken last-wins (``from=1&from=2``); a list-valued one (PagerDuty's
``statuses[]``) may repeat."""

from __future__ import annotations

import pytest

from mock_services._enforcement import EnforcedRoute


def _get(stack, http, service: str, path: str, query: list[tuple[str, str]]):
    token = stack.token(service)
    return http.get(stack.urls[service] + path, params=query,
                    headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(("service", "path", "query", "name"), [
    ("datadog", "/api/v1/query",
     [("from", "1000"), ("from", "2000"), ("to", "4600"), ("query", "avg:x{env:prod}")], "from"),
    ("datadog", "/api/v1/query",
     [("from", "1000"), ("to", "4600"), ("query", "avg:x{env:prod}"),
      ("query", "avg:x{env:staging}")], "query"),
    ("datadog", "/api/v1/events", [("start", "1"), ("end", "9"), ("end", "9")], "end"),
    ("pagerduty", "/incidents", [("limit", "5"), ("limit", "100")], "limit"),
])
def test_a_repeated_query_parameter_is_refused_and_audited(stack, http, service, path, query,
                                                           name):
    response = _get(stack, http, service, path, query)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["reason"]) == ("invalid_request", "repeated_parameter")
    assert repr(name) in body["error_description"]
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", "repeated_parameter", 422)


def test_a_list_valued_parameter_may_repeat(stack, http):
    response = _get(stack, http, "pagerduty", "/incidents",
                    [("statuses[]", "triggered"), ("statuses[]", "acknowledged")])
    assert response.status_code == 200, response.text


def test_each_route_knows_which_parameters_it_takes_once(stack):
    single = {(route.path, tuple(sorted(route.input_checks.single)))
              for name in ("datadog", "pagerduty") for route in stack.apps[name].routes
              if isinstance(route, EnforcedRoute) and route.methods == {"GET"}}
    assert ("/api/v1/query", ("from", "query", "to")) in single
    assert ("/api/v1/events", ("end", "start", "tags")) in single
    assert ("/incidents", ("limit",)) in single
