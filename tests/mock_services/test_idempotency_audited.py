"""An act whose audit record could not be written is recorded by its retry: the kept answer
carries whether its act was audited, and the replay of an answer not yet audited writes the
record of the act itself (``allow``/``ok``), once; later replays are ``idempotent_replay``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.responses import Response

from mock_services._idempotency import IdempotencyCache, owner_of
from orchestrator.audit import AuditRecord
from orchestrator.errors import Unavailable

CANARY = "i-0a1b2c3d4e5f60003"
CLEAN = {"actors": ("agent:cleanup", "agent:argocd", "agent:infrabot"),
         "scope": "urn:infra:infrastructure:clean"}
OWNER = owner_of("user:sam", "agent:cleanup")
KEY = {"Idempotency-Key": "run-x.cleanup.0", "X-Request-Id": "run-x.cleanup.0"}


def test_a_retried_act_whose_record_failed_is_audited_as_done_once(
        stack_factory: Any, http: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_factory(services=("aws",))
    append, fails = stack.audit.append, [1]

    def flaky(record: AuditRecord) -> Any:
        if fails[0] and record.action == "instances:terminate":
            fails[0] -= 1
            raise Unavailable("the audit store is full", reason="audit_unavailable")
        return append(record)

    monkeypatch.setattr(stack.audit, "append", flaky)
    instances = stack.apps["aws"].state.service.instances
    token = stack.token("aws", **CLEAN)
    params = {"InstanceIds": [CANARY]}
    first = stack.call(http, "aws.ec2.terminate_instances", params, token=token, headers=KEY)
    assert first.status_code == 503, first.text
    assert first.json()["reason"] == "audit_unavailable", first.text
    assert instances[CANARY].State.Name != "running"  # it acted before the record failed
    assert stack.records(first) == []
    answers = [stack.call(http, "aws.ec2.terminate_instances", params, token=token, headers=KEY)
               for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.headers["idempotent-replayed"] == "true" for a in answers)
    assert [(r.decision, r.reason, r.status) for r in stack.records(first)] == [
        ("allow", "ok", 200), ("allow", "idempotent_replay", 200)]


def test_an_audited_act_replays_as_a_replay(stack_factory: Any, http: Any) -> None:
    stack = stack_factory(services=("aws",))
    token = stack.token("aws", **CLEAN)
    params = {"InstanceIds": [CANARY]}
    for _ in range(2):
        stack.call(http, "aws.ec2.terminate_instances", params, token=token, headers=KEY)
    assert [r.reason for r in stack.audit.query() if r.request_id == KEY["X-Request-Id"]] == [
        "ok", "idempotent_replay"]


def test_marking_an_answer_audited_keeps_its_expiry() -> None:
    now = [1000.0]
    cache = IdempotencyCache(lambda: now[0], ttl_seconds=100)

    async def produce() -> Response:
        return Response(b"{}", 201, media_type="application/json")

    async def scenario() -> list[object]:
        first = await cache.run(OWNER, "k", "print", produce)
        now[0] += 60
        unaudited = await cache.run(OWNER, "k", "print", produce)
        assert unaudited.unaudited is not None
        await cache.audited(unaudited)
        audited = await cache.run(OWNER, "k", "print", produce)
        now[0] += 41  # past the first answer's expiry, not the marking's
        fresh = await cache.run(OWNER, "k", "print", produce)
        return [first.replayed, first.unaudited is not None, unaudited.replayed,
                audited.replayed, audited.unaudited, fresh.replayed]

    assert asyncio.run(scenario()) == [False, True, True, True, None, False]
