"""Mock AWS: EC2 (instances and tags) and CloudWatch (metric data and alarms).

Each operation has its own path, ``POST /ec2/<Operation>`` or ``POST /monitoring/<Operation>``,
with a JSON body using the AWS parameter names (``InstanceIds``, ``Resources``, ``Tags``,
``MetricDataQueries`` ...) and AWS-shaped answers. The real wire forms are accepted too and
routed to the same operation: the JSON protocol, ``POST /`` with ``X-Amz-Target:
AmazonEC2.CreateTags`` or ``GraniteServiceVersion20100801.GetMetricData`` (content type
``application/x-amz-json-1.x``), and the query-style ``POST /ec2?Action=CreateTags``; a DPoP
proof names the URL the client sent (``POST /``, ``/ec2``), never the operation's path.

Seeded with three prod instances tagged ``service=service-x`` (one a stale canary tagged
``deploy=stale``), one staging instance of service-x and one of service-y. An instance's ``env``
and ``service`` tags are its owner, fixed at launch: the resource check reads them, and
CreateTags and DeleteTags refuse to change them (``owner_tag_immutable``). CloudWatch metrics
and alarms are owned by the instances their ``InstanceId`` dimensions name; one that names none
covers the whole fleet, which no run's context owns. As in EC2, an instance holds at most 50 tags
(``tag_limit_exceeded``); :class:`AwsState` keeps the most recent
:data:`~mock_services._recent.LIMIT` alarms and changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from mock_services._aws_shapes import (
    CreateTagsIn,
    DeleteTagsIn,
    DescribeAlarmsIn,
    DescribeAlarmsOut,
    DescribeInstancesIn,
    DescribeInstancesOut,
    Filter,
    GetMetricDataIn,
    GetMetricDataOut,
    Instance,
    InstanceState,
    MetricDataResult,
    PutMetricAlarmIn,
    Reservation,
    ReturnOut,
    StateChange,
    StoredAlarm,
    Tag,
    TerminateIn,
    TerminateOut,
)
from mock_services._bearer import ApiError
from mock_services._enforcement import SENT_PATH
from mock_services._recent import RecentDict, RecentList
from mock_services._routing import CallerDep, ServiceRouter
from mock_services._targets import names, records
from orchestrator.identity import ANY, ResourceAttributes

_PREFIXES = {"AmazonEC2": "/ec2", "GraniteServiceVersion20100801": "/monitoring"}
_OPERATION = re.compile(r"^[A-Za-z]{1,64}$")
_INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"
TAGS_PER_RESOURCE = 50
OWNER_TAGS = ("env", "service")


RUNNING, TERMINATED = InstanceState(Code=16, Name="running"), InstanceState(Code=48, Name="terminated")


@dataclass
class AwsState:
    clock: Callable[[], float]
    instances: dict[str, Instance] = field(default_factory=dict)
    alarms: RecentDict[str, StoredAlarm] = field(default_factory=RecentDict)
    pinned: dict[tuple[str, str], float] = field(default_factory=dict)
    # (op, id, actor, sub)
    changes: RecentList[tuple[str, str, str, str]] = field(default_factory=RecentList)

    def set_metric(self, namespace: str, metric: str, value: float) -> None:
        self.pinned[(namespace, metric)] = value

    def tags(self, instance_id: str) -> dict[str, str]:
        return {t.Key: t.Value for t in self.instances[instance_id].Tags}

    def owner(self, instance_id: str) -> ResourceAttributes:
        """The instance's owning attributes (its ``env`` and ``service`` tags); an id that
        names no instance is owned by no run."""
        known = instance_id in self.instances
        tags = self.tags(instance_id) if known else {}
        return ResourceAttributes(resource=f"aws:ec2:{instance_id[:32]}",
                                  environment=tags.get("env", ANY),
                                  service=tags.get("service", ANY))

    def dimension_owners(self, dimensions: object) -> list[ResourceAttributes]:
        """The owners of a metric's or alarm's ``InstanceId`` dimensions; the fleet if none."""
        ids = [str(d.get("Value")) for d in records(dimensions) if d.get("Name") == "InstanceId"]
        if not ids:
            return [ResourceAttributes(resource="aws:cloudwatch:fleet", environment=ANY,
                                       service=ANY)]
        return [self.owner(i) for i in ids]

    def existing(self, ids: list[str]) -> list[Instance]:
        missing = [i for i in ids if i not in self.instances]
        if missing:
            reason = "instance_id_malformed" if not re.match(_INSTANCE_ID, missing[0]) \
                else "instance_not_found"
            raise ApiError(400, reason, f"The instance ID {missing[0][:32]!r} does not exist")
        return [self.instances[i] for i in dict.fromkeys(ids)]


def _seed(state: AwsState) -> None:
    launched = "2025-07-18T15:58:00.000Z"
    for iid, service, env, extra, ip in (
        ("i-0a1b2c3d4e5f60001", "service-x", "prod", {"Name": "service-x-web-1"}, "10.0.1.11"),
        ("i-0a1b2c3d4e5f60002", "service-x", "prod", {"Name": "service-x-web-2"}, "10.0.1.12"),
        ("i-0a1b2c3d4e5f60003", "service-x", "prod",
         {"Name": "service-x-canary", "deploy": "stale"}, "10.0.1.13"),
        ("i-0b1c2d3e4f5a60001", "service-x", "staging", {"Name": "service-x-staging-1"},
         "10.1.1.11"),
        ("i-0f9e8d7c6b5a40001", "service-y", "staging", {"Name": "service-y-web-1"},
         "10.0.2.21"),
    ):
        tags = {"service": service, "env": env, **extra}
        state.instances[iid] = Instance(
            InstanceId=iid, InstanceType="t3.medium", State=RUNNING, LaunchTime=launched,
            Tags=[Tag(Key=k, Value=v) for k, v in tags.items()], PrivateIpAddress=ip)


def _matches(state: AwsState, instance: Instance, filters: list[Filter]) -> bool:
    tags = state.tags(instance.InstanceId)
    for f in filters:
        if f.Name.startswith("tag:"):
            value = tags.get(f.Name[4:])
        elif f.Name == "instance-state-name":
            value = instance.State.Name
        elif f.Name == "instance-id":
            value = instance.InstanceId
        else:
            raise ApiError(400, "invalid_filter", f"The filter {f.Name[:40]!r} is invalid")
        if value not in f.Values:
            return False
    return True


class WireForms:
    """Routes the real AWS wire forms to the per-operation paths (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = _operation_path(scope)
            if path is not None:
                headers = [(k, b"application/json" if k == b"content-type"
                            and v.startswith(b"application/x-amz-json") else v)
                           for k, v in scope["headers"]]
                sent = scope.get(SENT_PATH) or scope.get("raw_path") or scope["path"].encode()
                scope = {**scope, "path": path, "raw_path": path.encode(), "headers": headers,
                         SENT_PATH: sent}  # the proof is for the URL the client sent
        await self.app(scope, receive, send)


def _operation_path(scope: Scope) -> str | None:
    if scope["path"] == "/":
        target = dict(scope["headers"]).get(b"x-amz-target", b"").decode("latin-1")
        prefix, _, operation = target.partition(".")
        if prefix in _PREFIXES and _OPERATION.match(operation):
            return f"{_PREFIXES[prefix]}/{operation}"
    elif scope["path"].rstrip("/") in _PREFIXES.values():
        action = parse_qs(scope["query_string"].decode("latin-1")).get("Action", [""])[-1]
        if _OPERATION.match(action):
            return f"{scope['path'].rstrip('/')}/{action}"
    return None


def build(router: ServiceRouter, clock: Callable[[], float]) -> AwsState:
    state = AwsState(clock)
    _seed(state)
    router.app.add_middleware(WireForms)

    @router.resolves("aws.instance")
    def instances(named: tuple[object, ...]) -> list[ResourceAttributes]:
        return [state.owner(i) for i in names(named[0]) if i in state.instances]

    @router.resolves("aws.metric")
    def metrics(named: tuple[object, ...]) -> list[ResourceAttributes]:
        stats = (q.get("MetricStat") for q in records(named[0]))
        return [owner for stat in stats if isinstance(stat, Mapping)
                for owner in state.dimension_owners(_dimensions(stat.get("Metric")))]

    @router.resolves("aws.alarm")
    def alarm(named: tuple[object, ...]) -> list[ResourceAttributes]:
        existing = state.alarms.get(named[0]) if isinstance(named[0], str) else None
        before = state.dimension_owners([d.model_dump() for d in existing.Dimensions]) \
            if existing is not None else []
        return before + state.dimension_owners(named[1])

    def alarm_owners(stored: StoredAlarm) -> list[ResourceAttributes]:
        return state.dimension_owners([d.model_dump() for d in stored.Dimensions])

    @router.route("aws.ec2.describe_instances")
    async def describe_instances(body: DescribeInstancesIn,
                                 caller: CallerDep) -> DescribeInstancesOut:
        found = state.existing(body.InstanceIds) if body.InstanceIds else [
            i for i in state.instances.values() if caller.sees(state.owner(i.InstanceId))]
        chosen = [i for i in found if _matches(state, i, body.Filters)]
        return DescribeInstancesOut(Reservations=[
            Reservation(ReservationId="r-" + i.InstanceId[2:], Instances=[i]) for i in chosen])

    def retag(instance: Instance, tags: dict[str, str]) -> None:
        updated = [Tag(Key=k, Value=v) for k, v in tags.items()]
        state.instances[instance.InstanceId] = instance.model_copy(update={"Tags": updated})

    @router.route("aws.ec2.create_tags")
    async def create_tags(body: CreateTagsIn, caller: CallerDep) -> ReturnOut:
        added = {t.Key: t.Value for t in body.Tags}
        _keep_owner(added)
        tagged = [(instance, {**state.tags(instance.InstanceId), **added})
                  for instance in state.existing(body.Resources)]
        if any(len(tags) > TAGS_PER_RESOURCE for _, tags in tagged):
            raise ApiError(400, "tag_limit_exceeded",
                           f"a resource holds at most {TAGS_PER_RESOURCE} tags")
        for instance, tags in tagged:
            retag(instance, tags)
            state.changes.add(("CreateTags", instance.InstanceId, caller.actor, caller.principal))
        return ReturnOut()

    @router.route("aws.ec2.delete_tags")
    async def delete_tags(body: DeleteTagsIn, caller: CallerDep) -> ReturnOut:
        _keep_owner(t.Key for t in body.Tags)  # deleting every tag keeps the owner's
        for instance in state.existing(body.Resources):
            tags = state.tags(instance.InstanceId)
            doomed = {t.Key for t in body.Tags if t.Value is None or tags.get(t.Key) == t.Value}
            retag(instance, {k: v for k, v in tags.items()
                             if k in OWNER_TAGS or body.Tags and k not in doomed})
            state.changes.add(("DeleteTags", instance.InstanceId, caller.actor, caller.principal))
        return ReturnOut()

    @router.route("aws.ec2.terminate_instances")
    async def terminate(body: TerminateIn, caller: CallerDep) -> TerminateOut:
        changes = []
        for instance in state.existing(body.InstanceIds):
            changes.append(StateChange(InstanceId=instance.InstanceId, CurrentState=TERMINATED,
                                       PreviousState=instance.State))
            state.instances[instance.InstanceId] = instance.model_copy(update={"State": TERMINATED})
            state.changes.add(("TerminateInstances", instance.InstanceId, caller.actor,
                               caller.principal))
        return TerminateOut(TerminatingInstances=changes)

    @router.route("aws.cloudwatch.get_metric_data")
    async def get_metric_data(body: GetMetricDataIn, caller: CallerDep) -> GetMetricDataOut:
        if not 0 < body.EndTime - body.StartTime <= 7 * 86400:
            raise ApiError(400, "invalid_time_range", "need StartTime < EndTime within 7 days")
        results = []
        for q in body.MetricDataQueries:
            stat = q.MetricStat
            period = max(stat.Period, (body.EndTime - body.StartTime) // 100)
            stamps = list(range(body.StartTime, body.EndTime, period))
            pinned = state.pinned.get((stat.Metric.Namespace, stat.Metric.MetricName))
            values = [pinned if pinned is not None else round(40 + 5 * math.sin(t / 900), 3)
                      for t in stamps]
            results.append(MetricDataResult(Id=q.Id, Label=q.Label or stat.Metric.MetricName,
                                            Timestamps=stamps[::-1], Values=values[::-1]))
        return GetMetricDataOut(MetricDataResults=results)

    @router.route("aws.cloudwatch.put_metric_alarm")
    async def put_metric_alarm(body: PutMetricAlarmIn, caller: CallerDep) -> dict[str, str]:
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{body.AlarmName}"
        state.alarms[body.AlarmName] = StoredAlarm(AlarmArn=arn, **body.model_dump())
        state.changes.add(("PutMetricAlarm", body.AlarmName, caller.actor, caller.principal))
        return {}

    @router.route("aws.cloudwatch.describe_alarms")
    async def describe_alarms(body: DescribeAlarmsIn, caller: CallerDep) -> DescribeAlarmsOut:
        wanted = set(body.AlarmNames)
        return DescribeAlarmsOut(MetricAlarms=[
            a for n, a in state.alarms.items() if (not wanted or n in wanted)
            and all(caller.sees(o) for o in alarm_owners(a))])

    return state


def _dimensions(metric: object) -> object:
    return metric.get("Dimensions") if isinstance(metric, Mapping) else None


def _keep_owner(tags: Iterable[str]) -> None:
    """An instance's owner tags are fixed at launch: retagging cannot move it to another
    environment or service (and out of the owner's reach or into another's)."""
    touched = sorted(set(tags) & set(OWNER_TAGS))
    if touched:
        raise ApiError(400, "owner_tag_immutable",
                       f"the {touched[0]} tag names the instance's owner and cannot change")
