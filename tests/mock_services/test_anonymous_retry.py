"""The summary of a minute's anonymous requests is never lost to one failed append: a summary
that cannot be written goes back to its window and is written by a later request, and the
summaries are appended apart from the request's own record, so that record failing does not
keep them back."""

from __future__ import annotations

from typing import Any

import pytest

from mock_services._anonymous import SUMMARY_ACTION, AnonymousTrail
from orchestrator.audit import AuditRecord
from orchestrator.errors import Unavailable

INCIDENTS = "/incidents"


@pytest.fixture
def pagerduty(stack_factory: Any, manual_clock: Any) -> Any:
    return stack_factory(services=("pagerduty",), clock=manual_clock)


def failing(stack: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Make the next ``fails[kind]`` appends of ``summary`` or ``own`` records fail."""
    fails = {"summary": 0, "own": 0}
    append = stack.audit.append

    def flaky(record: AuditRecord) -> Any:
        kind = "summary" if record.action == SUMMARY_ACTION else "own"
        if fails[kind]:
            fails[kind] -= 1
            raise Unavailable("the audit store is locked", reason="audit_unavailable")
        return append(record)

    monkeypatch.setattr(stack.audit, "append", flaky)
    return fails


def counted(stack: Any) -> list[str]:
    return [r.context["count"] for r in stack.audit.query() if r.action == SUMMARY_ACTION]


def get(stack: Any, http: Any) -> int:
    return http.get(stack.urls["pagerduty"] + INCIDENTS).status_code


def test_a_summary_that_fails_to_append_is_written_by_a_later_request(
        pagerduty, http, manual_clock, monkeypatch):
    fails = failing(pagerduty, monkeypatch)
    assert [get(pagerduty, http) for _ in range(5)] == [401] * 5  # one record, 4 counted
    manual_clock.advance(60)
    fails["summary"] = 1
    assert get(pagerduty, http) == 401  # its own record is written: the answer stands
    assert counted(pagerduty) == []
    assert get(pagerduty, http) == 401
    assert counted(pagerduty) == ["4"]
    [summary] = [r for r in pagerduty.audit.query() if r.action == SUMMARY_ACTION]
    assert summary.context["minute"] == "1970-01-01T00:16Z"  # the minute it counted
    manual_clock.advance(60)
    get(pagerduty, http)
    assert counted(pagerduty) == ["4", "1"]  # never written twice


def test_the_request_record_failing_does_not_keep_the_summaries_back(
        pagerduty, http, manual_clock, monkeypatch):
    fails = failing(pagerduty, monkeypatch)
    for _ in range(5):
        get(pagerduty, http)
    manual_clock.advance(60)
    fails["own"] = 1
    response = http.get(pagerduty.urls["pagerduty"] + INCIDENTS)
    assert response.status_code == 503
    assert response.json()["reason"] == "audit_unavailable"
    assert counted(pagerduty) == ["4"]


def test_a_summary_that_fails_at_shutdown_is_logged_not_raised(
        stack_factory, http, manual_clock, monkeypatch, caplog):
    stack = stack_factory(services=("pagerduty",), clock=manual_clock)
    for _ in range(3):
        get(stack, http)
    failing(stack, monkeypatch)["summary"] = 1
    stack.stop()
    assert "audit_append_failed" in caplog.text


def test_a_summary_put_back_is_merged_into_its_window_and_bounded():
    trail = AnonymousTrail(max_sources=2)
    for now in (0.0, 1.0, 2.0):
        trail.admit("10.0.0.1", "aws", now)
    [summary] = trail.due(60.0)
    assert trail.due(61.0) == []
    trail.put_back([summary])
    [again] = trail.due(62.0)  # written again, with the minute it counted
    assert (again.resource, again.context["minute"]) == ("source:10.0.0.1 count:2",
                                                         "1970-01-01T00:00Z")
    for source, now in (("10.0.0.2", 63.0), ("10.0.0.2", 64.0), ("10.0.0.3", 65.0)):
        trail.admit(source, "aws", now)
    trail.put_back([again])  # a third window: the next new source closes them all first
    own, due = trail.admit("10.0.0.4", "aws", 66.0)
    assert own and sorted(r.resource for r in due) == ["source:10.0.0.1 count:2",
                                                       "source:10.0.0.2 count:1"]
    trail.admit("10.0.0.4", "aws", 67.0)
    [closed] = trail.drain(68.0)
    trail.admit("10.0.0.4", "aws", 69.0)
    trail.admit("10.0.0.4", "aws", 69.5)
    trail.put_back([closed])  # into the open window of the same source and minute
    assert [r.resource for r in trail.drain(70.0)] == ["source:10.0.0.4 count:2"]
