"""Comparing expectations with a run's event log, without running anything: attempts read from
events (a retried hop starts over), partial expectations, and the diff shown for a mismatch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from infrabot import scenarios
from infrabot.scenarios._checks import check
from infrabot.scenarios._model import Expect
from infrabot.scenarios._outcome import Outcome
from orchestrator.runs import Run, RunEvent
from tests._events import detail

T0 = datetime(2025, 7, 18, 16, 10, tzinfo=UTC)
READ = "urn:infra:monitoring:read"


def make_run(*events: tuple[str | None, str, dict[str, Any]], status: str = "denied",
             reason: str = "agent:infrabot exchange for hand-off to agent:argocd: "
                           "invalid_scope (scope_not_grantable)") -> Run:
    return Run(run_id="run-1", workflow="post-deploy", user="user:sam", status=status,
               reason=reason, trigger="ci_pipeline", environment="prod",
               repository="acme/service-x", commit="9f2c1e7", service="service-x",
               created_at=T0, events=tuple(
                   RunEvent(run_id="run-1", seq=i, time=T0, kind=kind, agent=agent,
                            detail=detail(kind, **d))
                   for i, (agent, kind, d) in enumerate(events, 1)))


RUN = make_run(
    (None, "root_granted", {"granted": [READ], "dropped": ["urn:infra:deploy:create"]}),
    ("agent:infrabot", "exchanged", {"for": "datadog.metrics.query", "granted": READ}),
    ("agent:infrabot", "retrying", {"reason": "datadog_http_503"}),
    ("agent:infrabot", "exchanged", {"for": "datadog.metrics.query", "granted": READ}),
    ("agent:infrabot", "called", {"service": "datadog", "status": 200, "reason": "ok"}),
    ("agent:infrabot", "exchange_denied", {"for": "hand-off to agent:argocd",
                                           "error": "invalid_scope",
                                           "reason": "scope_not_grantable"}),
)


def expect(**data: Any) -> Expect:
    return Expect.model_validate({"status": "denied", **data})


def test_public_surface() -> None:
    assert sorted(scenarios.__all__) == sorted([
        "RUN_TIMEOUT", "Check", "Preflight", "Scenario", "ScenarioFile", "ScenarioResult",
        "StepVerdict", "junit_xml", "load_scenario", "load_scenarios", "preflight",
        "render_results", "results_json", "run_scenarios", "scenario_files",
        "select_scenarios", "summary_line"])


def test_attempts_are_read_from_the_events_and_a_retry_starts_over() -> None:
    outcome = Outcome.of(202, {"status": "accepted", "run_id": "run-1"}, RUN)
    attempts = [a.as_dict() for a in outcome.hops["agent:infrabot"]]
    assert attempts == [
        {"step": "datadog.metrics.query", "exchange": "allow", "call": "allow", "status": 200,
         "granted": (READ,)},
        {"step": "hand_off", "to": "agent:argocd", "exchange": "deny",
         "error": "invalid_scope", "reason": "scope_not_grantable"},
    ]
    assert (outcome.root.outcome, outcome.root.dropped) == ("granted", ("urn:infra:deploy:create",))


def test_fields_left_out_are_not_checked() -> None:
    checks = check(expect(hops={"agent:infrabot": [
        {"step": "datadog.metrics.query"}, {"step": "hand_off", "exchange": "deny"}]},
        reason="scope_not_grantable"), Outcome.of(202, {"status": "accepted"}, RUN))
    assert [(c.name, c.passed) for c in checks] == [
        ("webhook", True), ("status", True), ("reason", True), ("hops.agent:infrabot", True)]


def test_a_mismatched_hop_shows_a_diff_with_the_actual_refusal() -> None:
    (hop,) = [c for c in check(expect(hops={
        "agent:infrabot": [{"step": "datadog.metrics.query", "exchange": "allow"},
                           {"step": "hand_off", "exchange": "allow"}],
        "agent:argocd": "not_run"}), Outcome.of(202, {"status": "accepted"}, RUN))
        if c.name == "hops.agent:infrabot"]
    assert not hop.passed
    assert hop.diff == (
        "--- expected", "+++ actual", "@@ -1,2 +1,2 @@",
        " datadog.metrics.query: exchange=allow",
        "-hand_off: exchange=allow",
        "+hand_off: exchange=deny error=invalid_scope reason=scope_not_grantable",
    )


def test_a_missing_or_extra_attempt_fails() -> None:
    outcome = Outcome.of(202, {"status": "accepted"}, RUN)
    fewer = check(expect(hops={"agent:infrabot": [{"step": "datadog.metrics.query"}]}), outcome)
    assert not fewer[-1].passed and "+hand_off: exchange=deny" in "\n".join(fewer[-1].diff)
    ran = check(expect(hops={"agent:infrabot": "not_run"}), outcome)
    assert not ran[-1].passed and ran[-1].expected == "not_run"


def test_never_granted_looks_at_every_token() -> None:
    checks = check(expect(never_granted=[READ]), Outcome.of(202, {"status": "accepted"}, RUN))
    leak = checks[-1]
    assert (leak.name, leak.passed) == ("never_granted", False)
    assert "root grant" in leak.actual and "agent:infrabot datadog.metrics.query" in leak.actual


def test_a_refused_webhook_is_compared_by_status_and_reason() -> None:
    refused = Expect.model_validate({"webhook": {"status": 403, "reason": "user_disabled"}})
    assert [(c.name, c.passed, c.actual) for c in check(
        refused, Outcome.of(403, {"reason": "user_disabled"}, None))] == \
        [("webhook", True, "403 user_disabled")]
    (webhook, status) = check(expect(), Outcome.of(202, {"status": "ignored",
                                                         "reason": "failed_run"}, None))
    assert (webhook.passed, webhook.expected, webhook.actual) == \
        (False, "202 accepted", "202 failed_run")
    assert (status.passed, status.actual) == (False, "-")
