"""Mock Datadog behaviour: queries, events and monitors keep real state."""

from __future__ import annotations

import time


def test_a_metric_query_answers_a_time_series(stack, http):
    query = "avg:latency{service:service-x,env:prod}"
    response = stack.call(http, "datadog.metrics.query", {"from": 1000, "to": 4600,
                                                          "query": query})
    body = response.json()
    assert (body["status"], body["res_type"], body["query"]) == ("ok", "time_series", query)
    [series] = body["series"]
    assert (series["metric"], series["scope"], series["aggr"]) == (
        "latency", "service:service-x,env:prod", "avg")
    assert series["length"] == len(series["pointlist"]) == 60
    assert series["pointlist"][0][0] == 1_000_000  # milliseconds, as Datadog answers


def test_a_pinned_metric_stages_a_regression(stack_factory, http):
    stack = stack_factory(services=("datadog",))
    stack.apps["datadog"].state.service.set_metric("latency", "service:service-x,env:prod", 900.0)
    body = stack.call(http, "datadog.metrics.query", {
        "from": 0, "to": 600, "query": "max:latency{service:service-x,env:prod}"}).json()
    assert {v for _, v in body["series"][0]["pointlist"]} == {900.0}


def test_events_are_posted_and_listed(stack, http):
    now = int(time.time())
    posted = stack.call(http, "datadog.event.create", {
        "title": "Deployed service-x 9f2c1e7", "text": "by InfraBot",
        "tags": ["service:service-x", "env:prod", "deploy:9f2c1e7"], "alert_type": "success"})
    assert posted.status_code == 202
    event = posted.json()["event"]
    listed = stack.call(http, "datadog.event.list", {
        "start": now - 60, "end": now + 60, "tags": "deploy:9f2c1e7"}).json()["events"]
    assert event["id"] in {e["id"] for e in listed}
    state = stack.apps["datadog"].state.service
    assert state.attribution[f"event:{event['id']}"] == ("agent:infrabot", "user:sam")


def test_a_monitor_is_read_and_muted(stack_factory, http):
    stack = stack_factory(services=("datadog",))
    monitor = stack.call(http, "datadog.monitor.read", {"monitor_id": 1001}).json()
    assert (monitor["id"], monitor["options"]["silenced"]) == (1001, {})
    muted = stack.call(http, "datadog.monitor.mute", {"monitor_id": 1001,
                                                      "scope": "service:service-x", "end": 99})
    assert muted.json()["options"]["silenced"] == {"service:service-x": 99}
    everything = stack.call(http, "datadog.monitor.mute", {"monitor_id": 1002})
    assert everything.json()["options"]["silenced"] == {"*": None}
    missing = stack.call(http, "datadog.monitor.read", {"monitor_id": 7})
    assert (missing.status_code, missing.json()["reason"]) == (404, "not_found")
