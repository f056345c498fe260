"""A service on a PostgreSQL audit trail: it never acts without its record. A trail it cannot
write (a lock held past the timeout) gets 503 ``audit_unavailable`` and leaves the service's
state as it was; connections killed under it (what a PostgreSQL restart does) cost nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from pydantic import SecretStr

from orchestrator.audit._schema import SCHEMA
from tests._postgres import fresh_schema, kill_connections

CANARY = "i-0a1b2c3d4e5f60003"  # service-x-canary, tagged deploy=stale
CLEAN = {"actors": ("agent:cleanup", "agent:argocd", "agent:infrabot"),
         "scope": "urn:infra:infrastructure:clean"}


@pytest.fixture
def aws(stack_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, str]]:
    """The AWS mock alone, its audit trail in a fresh PostgreSQL schema (lock waits 0.3 s)."""
    monkeypatch.setattr("orchestrator.audit._store.SCHEMA", replace(SCHEMA, busy_timeout=0.3))
    with fresh_schema() as url:
        stack = stack_factory(services=("aws",), database_url=SecretStr(url))
        yield stack, url
        stack.stop()


def _terminate(stack, http):
    return stack.call(http, "aws.ec2.terminate_instances", {"InstanceIds": [CANARY]}, **CLEAN)


def test_a_trail_that_cannot_be_written_stops_the_action(aws, http) -> None:
    stack, url = aws
    state = stack.apps["aws"].state.service
    assert state.instances[CANARY].State.Name == "running"
    changes = len(state.changes)
    with psycopg.connect(url, autocommit=True) as other, other.transaction():
        other.execute("LOCK TABLE writers IN ACCESS EXCLUSIVE MODE")
        refused = _terminate(stack, http)
    assert refused.status_code == 503, refused.text
    assert refused.json()["reason"] == "audit_unavailable"
    assert state.instances[CANARY].State.Name == "running" and len(state.changes) == changes
    assert stack.records(refused) == []
    done = _terminate(stack, http)  # the trail is writable again: it acts, recorded once
    assert done.status_code == 200, done.text
    assert state.instances[CANARY].State.Name == "terminated"
    (record,) = stack.records(done)
    assert (record.decision, record.action) == ("allow", "instances:terminate")
    assert stack.audit.verify().ok


def test_killed_connections_lose_and_duplicate_no_record(aws, http) -> None:
    stack, url = aws
    answers = []
    for _ in range(5):
        kill_connections(url)  # every pooled connection of this test dies while idle
        answers.append(stack.call(http, "aws.ec2.describe_instances", {}))
    assert [a.status_code for a in answers] == [200] * 5
    assert [len(stack.records(a)) for a in answers] == [1] * 5
    report = stack.audit.verify()
    assert report.ok and report.records == 5
