"""Requests with no credential at all are audited without letting an anonymous client grow the
trail without bound: per service, source and minute, the first is recorded and the rest are
counted into one summary record, written when the minute has passed or when the service stops;
``audit query`` shows the count."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from infrabot.cli import cli
from mock_services._anonymous import SUMMARY_ACTION, SUMMARY_REASON, AnonymousTrail
from orchestrator.audit import AuditStore

MONITOR = "/api/v1/monitor/1001"


@pytest.fixture
def quiet(stack_factory: Any, manual_clock: Any) -> Any:
    return stack_factory(services=("datadog",), clock=manual_clock)


def anonymous(stack: Any, http: Any, count: int, path: str = MONITOR) -> None:
    for _ in range(count):
        response = http.get(stack.urls["datadog"] + path)
        expected = (401, "missing_token") if path == MONITOR else (404, "not_found")
        assert (response.status_code, response.json()["reason"]) == expected


def summaries(stack: Any) -> list[Any]:
    return [r for r in stack.audit.query() if r.action == SUMMARY_ACTION]


def test_a_flood_is_one_record_and_one_summary_per_minute(quiet, http, manual_clock):
    anonymous(quiet, http, 50)
    assert [r.reason for r in quiet.audit.query()] == ["missing_token"]
    manual_clock.advance(60)
    anonymous(quiet, http, 1)
    [summary] = summaries(quiet)
    assert (summary.decision, summary.reason, summary.service) == ("deny", SUMMARY_REASON,
                                                                   "datadog")
    assert summary.resource == "source:127.0.0.1 count:49"
    assert (summary.context["source"], summary.context["count"]) == ("127.0.0.1", "49")
    assert summary.context["minute"] == "1970-01-01T00:16Z"
    assert len(quiet.audit.query()) == 3  # the first of each minute, and the summary


def test_unrouted_anonymous_requests_are_counted_too(quiet, http, manual_clock):
    anonymous(quiet, http, 3, path="/nope")
    anonymous(quiet, http, 2)
    assert len(quiet.audit.query()) == 1
    manual_clock.advance(120)
    anonymous(quiet, http, 1)
    assert summaries(quiet)[0].context["count"] == "4"


def test_an_authenticated_request_is_always_its_own_record_and_closes_old_windows(
        quiet, http, manual_clock):
    anonymous(quiet, http, 5)
    manual_clock.advance(60)
    for _ in range(3):
        response = http.get(quiet.urls["datadog"] + MONITOR,
                            headers={"Authorization": "Bearer not-a-token"})
        assert response.json()["reason"] == "malformed"
    records = quiet.audit.query()
    assert [r.reason for r in records].count("malformed") == 3
    assert summaries(quiet)[0].context["count"] == "4"


def test_stopping_the_service_writes_the_open_count_and_audit_query_shows_it(
        stack_factory, http, manual_clock):
    stack = stack_factory(services=("datadog",), clock=manual_clock)
    anonymous(stack, http, 7)
    db = stack.settings.audit_db
    stack.stop()
    with AuditStore(db) as store:
        [summary] = [r for r in store.query() if r.action == SUMMARY_ACTION]
    assert summary.context["count"] == "6"
    shown = CliRunner().invoke(cli, ["audit", "query", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert "count:6" in shown.output and SUMMARY_ACTION in shown.output


def test_open_windows_are_bounded_and_no_count_is_lost():
    trail = AnonymousTrail(max_sources=2)
    assert trail.admit("10.0.0.1", "aws", 0.0) == (True, [])
    assert trail.admit("10.0.0.1", "aws", 1.0) == (False, [])
    assert trail.admit("10.0.0.2", "aws", 2.0) == (True, [])
    own, due = trail.admit("10.0.0.3", "aws", 3.0)  # a third source closes the two open ones
    assert own and [r.context["count"] for r in due] == ["1"]
    assert trail.admit("10.0.0.3", "aws", 4.0) == (False, [])
    assert [r.resource for r in trail.drain(5.0)] == ["source:10.0.0.3 count:1"]
    assert trail.drain(6.0) == []
