"""Mock Datadog (API v1): metric queries, events and monitors, with in-memory state.

``GET /api/v1/query`` answers deterministic synthetic points (``set_metric`` pins a value, e.g.
to stage a latency regression); ``POST /api/v1/events`` posts an event (202, as Datadog does;
it needs ``urn:infra:monitoring:mute``, the directory's only Datadog write scope);
``GET /api/v1/monitor/{id}`` and ``POST /api/v1/monitor/{id}/mute`` read and silence the seeded
monitors. What a request touches is owned by the ``service:`` and ``env:`` tags it carries: a
query's tag scope, an event's tags, a monitor's tags; a query or event that leaves one out covers
every value, which no run's context owns. :class:`DatadogState` keeps who did what, for
end-to-end tests: its most recent :data:`~mock_services._recent.LIMIT` events, and each monitor
its last ``LIMIT`` silenced scopes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from mock_services._access import Caller
from mock_services._bearer import ApiError
from mock_services._numbers import EPOCH_BOUNDS, ID_BOUNDS, MAX_ID, EpochSeconds
from mock_services._recent import RecentList, add_attributed, newest
from mock_services._routing import CallerDep, ServiceRouter
from mock_services._targets import names, numbers
from orchestrator.identity import ANY, ResourceAttributes

_QUERY = re.compile(r"^(avg|sum|min|max):([A-Za-z0-9_.]{1,100})\{([A-Za-z0-9_.:,/*-]{0,200})\}$")
_BASELINES = {"latency": 120.0, "errors": 0.4, "cpu": 35.0, "requests": 900.0}
MAX_RANGE_SECONDS = 7 * 24 * 3600
MonitorId = Annotated[int, Path(**ID_BOUNDS)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Series(BaseModel):
    metric: str
    display_name: str
    scope: str
    expression: str
    aggr: str
    pointlist: list[tuple[int, float]]
    start: int
    end: int
    interval: int
    length: int
    tag_set: list[str]
    unit: None = None


class QueryResult(BaseModel):
    status: str = "ok"
    res_type: str = "time_series"
    resp_version: int = 1
    query: str
    from_date: int
    to_date: int
    message: str = ""
    group_by: list[str] = []
    series: list[Series]


class EventIn(_Model):
    title: str = Field(min_length=1, max_length=500)
    text: str = Field("", max_length=4000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    alert_type: Literal["error", "warning", "info", "success", "user_update"] = "info"
    priority: Literal["normal", "low"] = "normal"
    aggregation_key: str | None = Field(None, max_length=100)
    date_happened: EpochSeconds | None = None


class Event(BaseModel):
    id: int
    title: str
    text: str
    date_happened: int
    tags: list[str]
    alert_type: str
    priority: str
    aggregation_key: str | None = None
    url: str


class EventPosted(BaseModel):
    status: str = "ok"
    event: Event


class EventList(BaseModel):
    events: list[Event]


class MonitorOptions(BaseModel):
    silenced: dict[str, int | None] = {}
    notify_no_data: bool = False


class Monitor(BaseModel):
    id: int
    name: str
    type: str = "metric alert"
    query: str
    message: str
    tags: list[str]
    overall_state: str = "OK"
    options: MonitorOptions = MonitorOptions()
    created: str = "2025-07-01T00:00:00.000000+00:00"
    modified: str = "2025-07-01T00:00:00.000000+00:00"


class MuteIn(_Model):
    scope: str | None = Field(None, max_length=200)
    end: EpochSeconds | None = None


@dataclass
class DatadogState:
    clock: Callable[[], float]
    events: RecentList[Event] = field(default_factory=RecentList)
    monitors: dict[int, Monitor] = field(default_factory=dict)
    pinned: dict[tuple[str, str], float] = field(default_factory=dict)
    # "event:1" -> who; an event's entry goes when the event does.
    attribution: dict[str, tuple[str, str]] = field(default_factory=dict)

    def set_metric(self, metric: str, scope: str, value: float) -> None:
        """Pin ``metric`` in ``scope`` (``*``: in every scope) to ``value``: a regression on
        demand (a scenario's ``changes: {metrics: ...}``)."""
        self.pinned[(metric, scope)] = value

    def value(self, metric: str, scope: str, ts: int) -> float:
        for key in ((metric, scope), (metric, ANY)):
            if key in self.pinned:
                return self.pinned[key]
        base = _BASELINES.get(metric.split(".")[-1], 10.0)
        return round(base * (1 + 0.1 * math.sin(ts / 600 + len(scope))), 3)


def _seed(state: DatadogState) -> None:
    for mid, name, query in (
        (1001, "service-x p99 latency", "avg(last_5m):avg:latency{service:service-x} > 500"),
        (1002, "service-x error rate", "avg(last_5m):avg:errors{service:service-x} > 5"),
    ):
        state.monitors[mid] = Monitor(id=mid, name=name, query=query,
                                      message="@pagerduty-service-x",
                                      tags=["service:service-x", "env:prod"])
    state.monitors[1101] = Monitor(
        id=1101, name="service-x staging p99 latency",
        query="avg(last_5m):avg:latency{service:service-x,env:staging} > 800",
        message="@slack-service-x", tags=["service:service-x", "env:staging"])


def owner_of(resource: str, tags: Iterable[str]) -> ResourceAttributes:
    """What ``service:`` and ``env:`` tags own; a tag left out, a wildcard or two values of
    one tag cover more than one owner."""
    values: dict[str, set[str]] = {}
    for tag in tags:
        key, _, value = tag.partition(":")
        values.setdefault(key, set()).add(value)

    def one(key: str) -> str:
        found = values.get(key, set())
        return next(iter(found)) if len(found) == 1 and "*" not in next(iter(found)) else ANY

    return ResourceAttributes(resource=resource, environment=one("env"), service=one("service"))


def _visible(caller: Caller, event: Event) -> bool:
    return caller.sees(owner_of(f"datadog:event:{event.id}", event.tags))


def build(router: ServiceRouter, clock: Callable[[], float]) -> DatadogState:
    state = DatadogState(clock)
    _seed(state)

    @router.resolves("datadog.query")
    def query_scope(named: tuple[object, ...]) -> list[ResourceAttributes]:
        match = _QUERY.match(named[0]) if isinstance(named[0], str) else None
        if match is None:  # the handler refuses it as invalid_query
            return []
        return [owner_of("datadog:query", match.group(3).split(","))]

    @router.resolves("datadog.tags")
    def event_tags(named: tuple[object, ...]) -> list[ResourceAttributes]:
        return [owner_of("datadog:event", names(named[0]))]

    @router.resolves("datadog.monitor")
    def monitors(named: tuple[object, ...]) -> list[ResourceAttributes]:
        found = [state.monitors.get(i) for i in numbers(named[0], MAX_ID)]
        return [owner_of(f"datadog:monitor:{m.id}", m.tags) for m in found if m is not None]

    @router.route("datadog.metrics.query")
    async def query_metrics(
        caller: CallerDep,
        from_: int = Query(alias="from", **EPOCH_BOUNDS),
        to: int = Query(**EPOCH_BOUNDS),
        query: str = Query(min_length=1, max_length=300),
    ) -> QueryResult:
        match = _QUERY.match(query)
        if match is None:
            raise ApiError(400, "invalid_query", "query must look like avg:metric{tag:value}")
        if not 0 < to - from_ <= MAX_RANGE_SECONDS:
            raise ApiError(400, "invalid_time_range", "need from < to within seven days")
        aggr, metric, scope = match.groups()
        step = max(60, (to - from_) // 100)
        points = [(ts * 1000, state.value(metric, scope, ts)) for ts in range(from_, to, step)]
        series = Series(metric=metric, display_name=metric, scope=scope or "*", expression=query,
                        aggr=aggr, pointlist=points, start=from_ * 1000, end=to * 1000,
                        interval=step, length=len(points),
                        tag_set=[t for t in scope.split(",") if t])
        return QueryResult(query=query, from_date=from_ * 1000, to_date=to * 1000,
                           series=[series])

    @router.route("datadog.event.create", status_code=202)
    async def post_event(body: EventIn, caller: CallerDep) -> EventPosted:
        eid = state.events.added + 1
        event = Event(id=eid, url=f"/event/event?id={eid}",
                      date_happened=body.date_happened or int(state.clock()),
                      **body.model_dump(exclude={"date_happened"}))
        add_attributed(state.events, event, state.attribution, "event",
                       (caller.actor, caller.principal))
        return EventPosted(event=event)

    @router.route("datadog.event.list")
    async def list_events(caller: CallerDep, start: int = Query(**EPOCH_BOUNDS),
                          end: int = Query(**EPOCH_BOUNDS),
                          tags: str | None = Query(None, max_length=500)) -> EventList:
        wanted = {t for t in (tags or "").split(",") if t}
        events = [e for e in reversed(state.events)
                  if start <= e.date_happened <= end and wanted <= set(e.tags)
                  and _visible(caller, e)]
        return EventList(events=events)

    def monitor(monitor_id: int) -> Monitor:
        if monitor_id not in state.monitors:
            raise ApiError(404, "not_found", "Monitor not found")
        return state.monitors[monitor_id]

    @router.route("datadog.monitor.read")
    async def get_monitor(monitor_id: MonitorId, caller: CallerDep) -> Monitor:
        return monitor(monitor_id)

    @router.route("datadog.monitor.mute")
    async def mute_monitor(monitor_id: MonitorId, caller: CallerDep,
                           body: MuteIn | None = None) -> Monitor:
        current = monitor(monitor_id)
        mute = body or MuteIn()
        silenced = newest({**current.options.silenced, (mute.scope or "*"): mute.end})
        options = current.options.model_copy(update={"silenced": silenced})
        updated = current.model_copy(update={"options": options})
        state.monitors[monitor_id] = updated
        state.attribution[f"monitor:{monitor_id}"] = (caller.actor, caller.principal)
        return updated

    return state
