"""The resume rule checked against the hop's plan: a journaled step is resumed by its number
only while the plan still has the same action at that number (a hand-off exchange: one of the
plan's hand-offs), else the hop ends there, ``changed``."""

from __future__ import annotations

from orchestrator.runs import HAND_OFF, Resume, StepRecord, idempotency_key, resume_point

PLAN = ["datadog.metrics.query", "github.pull.read"]
HAND_OFFS = {f"{HAND_OFF}agent:argocd", f"{HAND_OFF}agent:cleanup"}


def record(step: int, action: str, state: str = "done") -> StepRecord:
    return StepRecord(step, action, state, idempotency_key("run-1", "agent:infrabot", step),
                      None, 1)


def test_the_plans_own_actions_resume_as_before() -> None:
    records = {0: record(0, PLAN[0]), 1: record(1, PLAN[1], "started")}
    assert resume_point(records, 3, actions=PLAN, hand_offs=HAND_OFFS) == \
        Resume(1, in_doubt=records[1])


def test_another_action_at_a_steps_number_is_a_change() -> None:
    records = {0: record(0, PLAN[0]), 1: record(1, "aws.ec2.create_tags")}
    assert resume_point(records, 3, actions=PLAN, hand_offs=HAND_OFFS) == \
        Resume(1, changed=records[1])


def test_a_step_the_plan_no_longer_has_is_a_change() -> None:
    records = {0: record(0, PLAN[0]), 1: record(1, PLAN[1]), 2: record(2, "github.comment.create")}
    assert resume_point(records, 3, actions=PLAN, hand_offs=HAND_OFFS) == \
        Resume(2, changed=records[2])


def test_a_hand_off_to_an_agent_of_the_plan_is_no_change_and_to_another_is() -> None:
    refused = record(2, f"{HAND_OFF}agent:argocd", "denied")
    records = {0: record(0, PLAN[0]), 1: record(1, PLAN[1]), 2: refused}
    assert resume_point(records, 3, actions=PLAN, hand_offs=HAND_OFFS) == \
        Resume(2, stopped=refused)
    gone = record(3, f"{HAND_OFF}agent:scanner", "denied")
    assert resume_point({**records, 3: gone}, 3, actions=PLAN, hand_offs=HAND_OFFS) == \
        Resume(3, changed=gone)


def test_steps_added_after_the_journaled_ones_are_no_change() -> None:
    assert resume_point({0: record(0, PLAN[0])}, 3, actions=PLAN, hand_offs=HAND_OFFS) == \
        Resume(1)


def test_without_the_plan_the_rule_is_by_number_only() -> None:
    assert resume_point({0: record(0, "aws.ec2.create_tags")}, 3) == Resume(1)
