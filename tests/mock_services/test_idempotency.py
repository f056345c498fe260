"""Idempotency-Key on mutating routes: replay the first answer, change nothing twice."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

COMMENT = {"owner": "acme", "repo": "service-x", "issue_number": 124, "body": "deployed"}


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"task-{uuid.uuid4()}"}


def comments(stack) -> int:
    return len(stack.apps["github"].state.service.comments[("acme", "service-x", 124)])


def test_the_same_key_twice_changes_state_once_and_replays_the_answer(stack, http):
    headers, before = key(), comments(stack)
    token = stack.token("github")
    first = stack.call(http, "github.comment.create", COMMENT, token=token, headers=headers)
    second = stack.call(http, "github.comment.create", COMMENT, token=token, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert comments(stack) == before + 1
    [original] = stack.records(first)
    [replay] = stack.records(second)
    assert (original.decision, original.reason) == ("allow", "ok")
    assert (replay.decision, replay.reason, replay.status) == ("allow", "idempotent_replay", 201)


def test_a_retry_with_a_fresh_token_of_the_same_principal_replays(stack, http):
    headers, before = key(), comments(stack)
    first = stack.call(http, "github.comment.create", COMMENT, headers=headers)
    second = stack.call(http, "github.comment.create", COMMENT, headers=headers)
    assert first.json() == second.json()
    assert comments(stack) == before + 1


def test_the_same_key_with_another_body_is_422(stack, http):
    headers = key()
    assert stack.call(http, "github.comment.create", COMMENT, headers=headers).status_code == 201
    other = {**COMMENT, "body": "something else"}
    response = stack.call(http, "github.comment.create", other, headers=headers)
    assert response.status_code == 422
    assert response.json()["reason"] == "idempotency_key_reused"
    [record] = stack.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", "idempotency_key_reused",
                                                               422)


def test_json_spelling_does_not_make_a_request_different(stack, http):
    headers = {**key(), "Authorization": f"Bearer {stack.token('github')}",
               "Content-Type": "application/json"}
    url = stack.urls["github"] + "/repos/acme/service-x/issues/124/comments"
    first = http.post(url, content=b'{"body": "same"}', headers=headers)
    second = http.post(url, content=b'{ "body" :"same" }', headers=headers)
    assert first.status_code == 201 and second.headers["idempotent-replayed"] == "true"


def test_keys_are_per_principal(stack, http):
    headers, before = key(), comments(stack)
    stack.call(http, "github.comment.create", COMMENT, headers=headers)
    response = stack.call(http, "github.comment.create", COMMENT, headers=headers,
                          sub="user:robin")
    assert response.status_code == 201 and "idempotent-replayed" not in response.headers
    assert comments(stack) == before + 2


def test_a_refused_request_does_not_consume_the_key(stack, http):
    headers, before = key(), comments(stack)
    denied = stack.call(http, "github.comment.create", COMMENT, headers=headers,
                        ctx={"trigger": "manual"})
    assert denied.status_code == 403
    allowed = stack.call(http, "github.comment.create", COMMENT, headers=headers)
    assert allowed.status_code == 201 and "idempotent-replayed" not in allowed.headers
    assert comments(stack) == before + 1


def test_concurrent_retries_run_once(stack, http):
    headers, before = key(), comments(stack)
    token = stack.token("github")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stack.call(http, "github.comment.create", COMMENT,
                                                     token=token, headers=headers), range(8)))
    # 409: a replay while the act's record was being written (the agents retry it)
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    assert len({a.content for a in answers if a.status_code == 201}) == 1
    assert comments(stack) == before + 1
    reasons = [r.reason for a in answers for r in stack.records(a) if r.status == 201]
    assert sorted(reasons) == ["idempotent_replay"] * (statuses.count(201) - 1) + ["ok"]


def test_branch_deletion_replays_its_204(stack, http):
    branches = stack.apps["github"].state.service.branches[("acme", "service-x")]
    branches["tmp/idempotent"] = "abc1234"
    params = {"owner": "acme", "repo": "service-x", "branch": "tmp/idempotent"}
    headers = key()
    first = stack.call(http, "github.branch.delete", params, headers=headers)
    second = stack.call(http, "github.branch.delete", params, headers=headers)
    assert first.status_code == second.status_code == 204
    assert "tmp/idempotent" not in branches
    without_key = stack.call(http, "github.branch.delete", params)
    assert without_key.status_code == 422
    assert without_key.json()["reason"] == "reference_does_not_exist"


def test_aws_and_pagerduty_writes_replay(stack, http):
    headers = key()
    created = [stack.call(http, "pagerduty.incident.create",
                          {"title": "replayed", "service_id": "PSVCX01"}, headers=headers)
               for _ in range(2)]
    assert created[0].json() == created[1].json()
    incidents = stack.apps["pagerduty"].state.service.incidents
    assert sum(1 for i in incidents.values() if i.title == "replayed") == 1
    tag = {"Resources": ["i-0a1b2c3d4e5f60001"], "Tags": [{"Key": "replayed", "Value": "1"}]}
    headers = key()
    answers = [stack.call(http, "aws.ec2.create_tags", tag, headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[1].headers["idempotent-replayed"] == "true"


def test_reads_ignore_the_key(stack, http):
    headers = key()
    params = {"monitor_id": 1001}
    answers = [stack.call(http, "datadog.monitor.read", params, headers=headers) for _ in range(2)]
    assert all("idempotent-replayed" not in a.headers for a in answers)
    assert [r.reason for a in answers for r in stack.records(a)] == ["ok", "ok"]


def test_a_malformed_key_is_400(stack, http):
    response = stack.call(http, "github.comment.create", COMMENT,
                          headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_idempotency_key"
