"""The mocks' records are bounded: past the bound the oldest go first, the newest stay.

The HTTP tests shrink :data:`mock_services._recent.LIMIT` (read when a collection is made) to 3
before building their stack, then drive more than that through the real routes; one test drives
past the real bound. The Idempotency-Key cache is driven through its object, with a manual clock.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.responses import Response

from mock_services import _recent, aws, pagerduty
from mock_services._idempotency import MAX_KEYS, TTL_SECONDS, IdempotencyCache
from mock_services._recent import RecentDict, RecentList, newest

SMALL = 3
REPO = {"owner": "acme", "repo": "service-x"}
WEB1, WEB2 = "i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"
SAM = ("agent:infrabot", "user:sam")
OWNED = ["service:service-x", "env:prod"]


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(_recent, "LIMIT", SMALL)
    return SMALL


def test_a_recent_list_keeps_the_newest_and_counts_every_addition():
    items: RecentList[int] = RecentList(limit=3)
    dropped = [items.add(n) for n in range(1, 6)]
    assert dropped == [None, None, None, 1, 2]
    assert items == [3, 4, 5] and list(reversed(items)) == [5, 4, 3]
    assert (len(items), items.added, items[0], items[-1], items[1:]) == (3, 5, 3, 5, [4, 5])


def test_a_newest_first_list_drops_from_the_end():
    items: RecentList[int] = RecentList(limit=3, newest_first=True)
    dropped = [items.add(n) for n in range(1, 6)]
    assert dropped == [None, None, None, 1, 2]
    assert items == [5, 4, 3]


def test_a_recent_dict_drops_its_oldest_key_but_never_a_pinned_one():
    entries: RecentDict[str, int] = RecentDict(limit=2)
    entries.pin("seed", 0)
    assert [entries.put(k, v) for k, v in (("a", 1), ("b", 2), ("a", 10))] == [None] * 3
    assert entries.put("c", 3) == ("a", 10)
    assert entries.put("seed", 7) is None
    assert entries == {"seed": 7, "b": 2, "c": 3} and list(entries) == ["seed", "b", "c"]
    assert (len(entries), entries.added) == (3, 4)


def test_newest_keeps_the_last_entries_in_order():
    assert newest({"a": 1, "b": 2, "c": 3, "d": 4}, 2) == {"c": 3, "d": 4}
    with pytest.raises(ValueError):
        RecentList(limit=0)


def test_a_collection_made_without_a_limit_takes_the_module_bound(small):
    assert (RecentList().limit, RecentDict().limit) == (SMALL, SMALL)


def test_a_pull_request_keeps_its_newest_comments_and_their_attribution(small, stack_factory,
                                                                       http):
    stack = stack_factory(services=("github",))
    token = stack.token("github")
    made = [stack.call(http, "github.comment.create",
                       {**REPO, "issue_number": 124, "body": f"comment {n}"}, token=token).json()
            for n in range(5)]
    assert len({c["id"] for c in made}) == 5
    listed = stack.call(http, "github.comment.list", {**REPO, "issue_number": 124}).json()
    assert [c["body"] for c in listed] == ["comment 2", "comment 3", "comment 4"]
    state = stack.apps["github"].state.service
    assert state.attribution == {f"comment:{c['id']}": SAM for c in made[2:]}


def test_a_deployment_keeps_its_newest_statuses_newest_first(small, stack_factory, http):
    stack = stack_factory(services=("github",))
    token = stack.token("github")
    params = {**REPO, "deployment_id": 9001}
    made = [stack.call(http, "github.deployment_status.create",
                       {**params, "state": "success", "description": f"rollout {n}"},
                       token=token).json() for n in range(5)]
    listed = stack.call(http, "github.deployment_status.list", params).json()
    assert [s["description"] for s in listed] == ["rollout 4", "rollout 3", "rollout 2"]
    state = stack.apps["github"].state.service
    assert state.attribution == {f"status:{s['id']}": SAM for s in made[2:]}


def test_datadog_keeps_its_newest_events_with_fresh_ids(small, stack_factory, http):
    stack = stack_factory(services=("datadog",))
    token = stack.token("datadog")
    ids = [stack.call(http, "datadog.event.create", {"title": f"deploy {n}", "tags": OWNED},
                      token=token).json()["event"]["id"] for n in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    now = int(time.time())
    listed = stack.call(http, "datadog.event.list", {"start": now - 600, "end": now + 600},
                        token=token).json()["events"]
    assert [(e["id"], e["title"]) for e in listed] == [(5, "deploy 4"), (4, "deploy 3"),
                                                       (3, "deploy 2")]
    state = stack.apps["datadog"].state.service
    assert state.attribution == {"event:3": SAM, "event:4": SAM, "event:5": SAM}


def test_a_monitor_keeps_its_latest_silenced_scopes(small, stack_factory, http):
    stack = stack_factory(services=("datadog",))
    token = stack.token("datadog")
    for n in range(5):
        muted = stack.call(http, "datadog.monitor.mute",
                           {"monitor_id": 1001, "scope": f"host:web-{n}", "end": n}, token=token)
    assert muted.json()["options"]["silenced"] == {"host:web-2": 2, "host:web-3": 3,
                                                   "host:web-4": 4}


def test_aws_keeps_its_newest_changes_and_alarms(small, stack_factory, http):
    stack = stack_factory(services=("aws",))
    token = stack.token("aws")
    alarm = {"MetricName": "CPUUtilization", "Namespace": "AWS/EC2", "Statistic": "Average",
             "Period": 60, "EvaluationPeriods": 3, "Threshold": 80,
             "ComparisonOperator": "GreaterThanThreshold",
             "Dimensions": [{"Name": "InstanceId", "Value": WEB1}]}
    for n in range(5):
        stack.call(http, "aws.cloudwatch.put_metric_alarm", {**alarm, "AlarmName": f"cpu-{n}"},
                   token=token)
    described = stack.call(http, "aws.cloudwatch.describe_alarms", {},
                           token=token).json()["MetricAlarms"]
    assert [a["AlarmName"] for a in described] == ["cpu-2", "cpu-3", "cpu-4"]
    assert stack.apps["aws"].state.service.changes == [
        ("PutMetricAlarm", f"cpu-{n}", *SAM) for n in (2, 3, 4)]


def test_the_real_bound_holds_over_http(stack_factory, http):
    stack = stack_factory(services=("aws",))
    token = stack.token("aws")
    resources = [WEB1, WEB2, "i-0a1b2c3d4e5f60003"]  # all of service-x's prod instances
    calls = _recent.LIMIT // len(resources) + 1
    for n in range(calls):
        tags = {"Resources": resources, "Tags": [{"Key": "deployed-commit", "Value": str(n)}]}
        assert stack.call(http, "aws.ec2.create_tags", tags, token=token).status_code == 200
    changes = stack.apps["aws"].state.service.changes
    assert (len(changes), changes.added) == (_recent.LIMIT, calls * len(resources))
    first_kept = calls * len(resources) - _recent.LIMIT
    assert changes[0] == ("CreateTags", resources[first_kept % len(resources)], *SAM)
    assert changes[-1] == ("CreateTags", resources[-1], *SAM)


def test_an_instance_holds_at_most_fifty_tags_and_a_refused_request_changes_nothing(
        stack_factory, http):
    stack = stack_factory(services=("aws",))
    token = stack.token("aws")
    state = stack.apps["aws"].state.service
    room = aws.TAGS_PER_RESOURCE - len(state.tags(WEB1))
    filler = [{"Key": f"k{n}", "Value": "v"} for n in range(room)]
    full = stack.call(http, "aws.ec2.create_tags", {"Resources": [WEB1], "Tags": filler},
                      token=token)
    assert full.status_code == 200 and len(state.tags(WEB1)) == 50
    before = (state.tags(WEB1), state.tags(WEB2), list(state.changes))
    over = stack.call(http, "aws.ec2.create_tags", {
        "Resources": [WEB2, WEB1], "Tags": [{"Key": "one-more", "Value": "v"}]}, token=token)
    assert (over.status_code, over.json()["reason"]) == (400, "tag_limit_exceeded")
    assert (state.tags(WEB1), state.tags(WEB2), list(state.changes)) == before
    overwrite = stack.call(http, "aws.ec2.create_tags", {
        "Resources": [WEB1], "Tags": [{"Key": "k0", "Value": "w"}]}, token=token)
    assert overwrite.status_code == 200 and state.tags(WEB1)["k0"] == "w"


def test_pagerduty_keeps_the_seeded_incident_and_the_newest_created(small, stack_factory, http):
    stack = stack_factory(services=("pagerduty",))
    token = stack.token("pagerduty")
    made = [stack.call(http, "pagerduty.incident.create",
                       {"title": f"incident {n}", "service_id": "PSVCX01", "details": "5xx"},
                       token=token).json()["incident"] for n in range(5)]
    assert [(i["id"], i["incident_number"]) for i in made] == [
        (f"Q00000{n}", n) for n in range(3, 8)]  # after the two seeded (prod, staging)
    listed = stack.call(http, "pagerduty.incident.list", {}, token=token).json()["incidents"]
    assert [i["id"] for i in listed] == ["P7X9K2Q", "Q000005", "Q000006", "Q000007"]
    gone = stack.call(http, "pagerduty.incident.read", {"id": "Q000003"}, token=token)
    assert (gone.status_code, gone.json()["reason"]) == (404, "not_found")
    state = stack.apps["pagerduty"].state.service
    assert list(state.notes) == ["P7X9K2Q", "PSTG4X1", "Q000005", "Q000006", "Q000007"]
    assert state.history == [(f"Q00000{n}", "created", *SAM) for n in (5, 6, 7)]


def test_an_incident_keeps_its_newest_notes(monkeypatch, stack_factory, http):
    monkeypatch.setattr(pagerduty, "NOTES_PER_INCIDENT", 2)
    stack = stack_factory(services=("pagerduty",))
    token = stack.token("pagerduty")
    ids = [stack.call(http, "pagerduty.note.create", {"id": "P7X9K2Q", "content": f"note {n}"},
                      token=token).json()["note"]["id"] for n in range(3)]
    assert ids == ["NP7X9K2Q1", "NP7X9K2Q2", "NP7X9K2Q3"]
    notes = stack.apps["pagerduty"].state.service.notes["P7X9K2Q"]
    assert [(n.id, n.content) for n in notes] == [("NP7X9K2Q2", "note 1"),
                                                   ("NP7X9K2Q3", "note 2")]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _send(cache: IdempotencyCache, key: str, produced: list[str]) -> bool:
    """A request under ``key``; whether it was replayed (``produced`` lists the real runs)."""

    async def produce() -> Response:
        produced.append(key)
        return Response(f'{{"key": "{key}"}}'.encode(), 201, media_type="application/json")

    answer = await cache.run("user:sam", key, "print", produce)
    await cache.audited(answer)  # the caller wrote its record (else a replay is 409 in its lease)
    assert (answer.response.status_code, answer.response.body) == (
        201, f'{{"key": "{key}"}}'.encode())
    return answer.replayed


def test_the_idempotency_cache_keeps_the_newest_keys_up_to_its_bound():
    cache, produced = IdempotencyCache(_Clock()), []

    async def scenario() -> None:
        for n in range(MAX_KEYS + 1):
            await _send(cache, f"k{n}", produced)
        assert (MAX_KEYS, len(cache), len(produced)) == (2_000, 2_000, 2_001)
        assert await _send(cache, f"k{MAX_KEYS}", produced)
        assert await _send(cache, "k1", produced)
        assert not await _send(cache, "k0", produced)
        assert produced[-1] == "k0" and len(cache) == 2_000
        assert not await _send(cache, "k1", produced)

    asyncio.run(scenario())


def test_a_replay_within_the_window_replays_and_an_expired_key_runs_again():
    clock, produced = _Clock(), []
    cache = IdempotencyCache(clock, max_entries=10)

    async def scenario() -> None:
        await _send(cache, "early", produced)
        clock.now += 10
        await _send(cache, "late", produced)
        clock.now += TTL_SECONDS - 11
        assert await _send(cache, "early", produced) and len(cache) == 2
        clock.now += 1
        assert not await _send(cache, "early", produced)
        assert produced == ["early", "late", "early"] and len(cache) == 2
        clock.now += 10
        assert await _send(cache, "early", produced) and len(cache) == 1

    asyncio.run(scenario())
