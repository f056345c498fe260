"""Idempotency keys are kept per user *and* per presenting client (the token's ``client_id``, the
acting agent): an agent's key is predictable (``<run_id>.<agent>.<step>``), so another agent
acting for the same user must neither spend it nor be answered from it."""

from __future__ import annotations

from typing import Any

CANARY = "i-0a1b2c3d4e5f60003"
CLEAN = "urn:infra:infrastructure:clean"
CLEANUP = ("agent:cleanup", "agent:argocd", "agent:infrabot")
ARGOCD = ("agent:argocd", "agent:infrabot")


def test_another_agent_cannot_spend_an_agents_key(stack_factory: Any, http: Any) -> None:
    stack = stack_factory(services=("aws",))
    ctx = {"run_id": "run-0123456789abcdef"}
    key = {"Idempotency-Key": "run-0123456789abcdef.cleanup.0"}
    other = stack.token("aws", actors=ARGOCD, ctx=ctx)
    cleanup = stack.token("aws", actors=CLEANUP, scope=CLEAN, ctx=ctx)
    squat = stack.call(http, "aws.ec2.create_tags",
                       {"Resources": [CANARY], "Tags": [{"Key": "rollout", "Value": "x"}]},
                       token=other, headers=key)
    assert squat.status_code == 200
    real = stack.call(http, "aws.ec2.terminate_instances", {"InstanceIds": [CANARY]},
                      token=cleanup, headers=key)
    assert real.status_code == 200, real.text
    assert "idempotent-replayed" not in real.headers
    assert stack.apps["aws"].state.service.instances[CANARY].State.Name != "running"


def test_the_same_request_by_another_client_acts_and_is_not_a_replay(
        stack: Any, http: Any) -> None:
    tag = {"Resources": ["i-0a1b2c3d4e5f60001"], "Tags": [{"Key": "per-agent", "Value": "1"}]}
    key = {"Idempotency-Key": "run-shared.step.0"}
    first = stack.call(http, "aws.ec2.create_tags", tag, headers=key, actors=ARGOCD)
    other = stack.call(http, "aws.ec2.create_tags", tag, headers=key)  # agent:infrabot
    again = stack.call(http, "aws.ec2.create_tags", tag, headers=key, actors=ARGOCD)
    assert [a.status_code for a in (first, other, again)] == [200, 200, 200]
    assert "idempotent-replayed" not in other.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert [r.reason for r in stack.records(other)] == ["ok"]
