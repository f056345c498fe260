"""The action catalogue: every operation the mock services offer, by name.

One :class:`Action` per operation (``datadog.metrics.query``, ``github.comment.create``,
``aws.ec2.create_tags``, ``pagerduty.incident.resolve`` ...) names its service, HTTP method, path
template, the scope it requires, the short verb the audit trail records (``metrics:query``,
``comment:post``, ``deploy:create`` ...) and the resource it touches. The service routes are
built from this table, so a route cannot drift from it; :func:`build_request` turns an action
name and flat parameters into the request an agent sends with an httpx client.

Two actions may share one route when the request body tells them apart (PagerDuty's
``PUT /incidents/{id}`` acknowledges or resolves by ``incident.status``); they then share the
scope too. AWS operations have one path each (``/ec2/CreateTags``); the AWS app also accepts the
real wire forms, ``POST /`` with ``X-Amz-Target`` and ``POST /ec2?Action=CreateTags``.

Every action also declares its :class:`Target`: the kind of resource it acts on and where the
request names it. The service resolves that kind to the resource's owning attributes
(environment, repository, service) and the enforcement layer checks them against the token's
``ctx`` before the handler runs; a route whose target kind the service cannot resolve is refused
when the app is built (docs/resources.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from orchestrator.audit import contains_raw_jwt
from orchestrator.identity import is_write

Params = Mapping[str, Any]
PreparedRequest = tuple[str, str, dict[str, Any], dict[str, Any] | None]

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?::path)?\}")
_MAX_VALUE = 128
# A base64url-encoded JSON object ('{"' encodes as "eyJ"): the start of any JOSE segment.
_JOSE_SEGMENT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


LISTING = "listing"


@dataclass(frozen=True)
class Target:
    """How an action finds the resource it acts on: a ``kind`` its service resolves to owning
    attributes, from the request ``fields`` that name it (path or query parameters, or dotted
    JSON body fields). ``LISTING`` names no resource: the handler shows only what the token's
    context may see."""

    kind: str
    fields: tuple[str, ...] = ()

    @property
    def listing(self) -> bool:
        return self.kind == LISTING

    def values(self, params: Mapping[str, object], body: object) -> tuple[object, ...]:
        """The raw value of each field in this request (``None`` where absent)."""
        return tuple(params[f] if f in params else lookup(body, f) for f in self.fields)


def _t(kind: str, *fields: str) -> Target:
    return Target(kind, fields)


_LISTED = Target(LISTING)


@dataclass(frozen=True)
class Action:
    name: str
    service: str
    method: str
    path: str
    scope: str
    audit_action: str
    resource: str
    summary: str
    target: Target
    query: tuple[tuple[str, str], ...] = ()  # (parameter name, wire name)
    body: Callable[[Params], dict[str, Any]] | None = None
    match: tuple[str, str] | None = None  # (dotted body field, value) on a shared route

    @property
    def mutating(self) -> bool:
        """Whether the action changes state (its scope is a write); it honours Idempotency-Key."""
        return is_write(self.scope)

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(m.group(1) for m in _FIELD.finditer(self.path))

    def matches(self, body: object) -> bool:
        return self.match is None or lookup(body, self.match[0]) == self.match[1]


def _q(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n.split("=")[0], n.split("=")[-1]) for n in names)


def _incident_update(status: str) -> Callable[[Params], dict[str, Any]]:
    def body(p: Params) -> dict[str, Any]:
        incident = {"type": "incident_reference", "status": status}
        if p.get("resolution"):
            incident["resolution"] = p["resolution"]
        return {"incident": incident}

    return body


def _incident_create(p: Params) -> dict[str, Any]:
    incident: dict[str, Any] = {
        "type": "incident", "title": p["title"],
        "service": {"id": p["service_id"], "type": "service_reference"},
        "urgency": p.get("urgency", "high"),
    }
    if p.get("details"):
        incident["body"] = {"type": "incident_body", "details": p["details"]}
    if p.get("incident_key"):
        incident["incident_key"] = p["incident_key"]
    return {"incident": incident}


_READ_MON, _MUTE = "urn:infra:monitoring:read", "urn:infra:monitoring:mute"
_REPO_READ, _COMMENT, _DEPLOY = "urn:infra:repo:read", "urn:infra:deploy:comment", "urn:infra:deploy:create"
_INFRA_READ, _TAG, _CLEAN = ("urn:infra:infrastructure:read", "urn:infra:infrastructure:tag",
                             "urn:infra:infrastructure:clean")
_INC_READ, _INC_WRITE, _INC_RESOLVE = ("urn:infra:incident:read", "urn:infra:incident:write",
                                       "urn:infra:incident:resolve")
_REPO = "/repos/{owner}/{repo}"
_GH = "github:{owner}/{repo}"
_REPO_T = _t("github.repository", "owner", "repo")
_DEPLOYMENT_T = _t("github.deployment", "owner", "repo", "deployment_id")
_INCIDENT_T = _t("pagerduty.incident", "id")

ACTIONS: tuple[Action, ...] = (
    # Datadog API v1. Posting an event is a write; the directory's only Datadog write scope is
    # monitoring:mute, so that is what it requires (no new scope is invented for it).
    Action("datadog.metrics.query", "datadog", "GET", "/api/v1/query", _READ_MON,
           "metrics:query", "datadog:query:{query}", "Query timeseries points",
           _t("datadog.query", "query"),
           query=_q("from", "to", "query")),
    Action("datadog.event.create", "datadog", "POST", "/api/v1/events", _MUTE,
           "event:post", "datadog:events", "Post an event", _t("datadog.tags", "tags")),
    Action("datadog.event.list", "datadog", "GET", "/api/v1/events", _READ_MON,
           "event:list", "datadog:events", "List events", _LISTED,
           query=_q("start", "end", "tags")),
    Action("datadog.monitor.read", "datadog", "GET", "/api/v1/monitor/{monitor_id}", _READ_MON,
           "monitor:read", "datadog:monitor:{monitor_id}", "Get a monitor's details",
           _t("datadog.monitor", "monitor_id")),
    Action("datadog.monitor.mute", "datadog", "POST", "/api/v1/monitor/{monitor_id}/mute", _MUTE,
           "monitor:mute", "datadog:monitor:{monitor_id}", "Mute a monitor",
           _t("datadog.monitor", "monitor_id")),
    # GitHub REST API.
    Action("github.pull.read", "github", "GET", _REPO + "/pulls/{pull_number}", _REPO_READ,
           "pr:read", _GH + "#pr-{pull_number}", "Get a pull request", _REPO_T),
    Action("github.comment.create", "github", "POST", _REPO + "/issues/{issue_number}/comments",
           _COMMENT, "comment:post", _GH + "#pr-{issue_number}", "Create an issue comment",
           _REPO_T),
    Action("github.comment.list", "github", "GET", _REPO + "/issues/{issue_number}/comments",
           _REPO_READ, "comment:list", _GH + "#pr-{issue_number}", "List issue comments", _REPO_T),
    Action("github.deployment_status.create", "github", "POST",
           _REPO + "/deployments/{deployment_id}/statuses", _DEPLOY, "deploy:create",
           _GH + ":deployment-{deployment_id}", "Create a deployment status", _DEPLOYMENT_T),
    Action("github.deployment_status.list", "github", "GET",
           _REPO + "/deployments/{deployment_id}/statuses", _REPO_READ, "deploy:list",
           _GH + ":deployment-{deployment_id}", "List deployment statuses", _DEPLOYMENT_T),
    Action("github.branch.delete", "github", "DELETE", _REPO + "/git/refs/heads/{branch:path}",
           _DEPLOY, "branch:delete", _GH + ":heads/{branch}", "Delete a branch reference", _REPO_T),
    # AWS: EC2 and CloudWatch (JSON bodies with the AWS parameter names).
    Action("aws.ec2.describe_instances", "aws", "POST", "/ec2/DescribeInstances", _INFRA_READ,
           "instances:describe", "aws:ec2:{InstanceIds}", "Describe EC2 instances",
           _t("aws.instance", "InstanceIds")),
    Action("aws.ec2.create_tags", "aws", "POST", "/ec2/CreateTags", _TAG,
           "tags:create", "aws:ec2:{Resources}", "Add or overwrite tags",
           _t("aws.instance", "Resources")),
    Action("aws.ec2.delete_tags", "aws", "POST", "/ec2/DeleteTags", _CLEAN,
           "tags:delete", "aws:ec2:{Resources}", "Delete tags", _t("aws.instance", "Resources")),
    Action("aws.ec2.terminate_instances", "aws", "POST", "/ec2/TerminateInstances", _CLEAN,
           "instances:terminate", "aws:ec2:{InstanceIds}", "Terminate instances",
           _t("aws.instance", "InstanceIds")),
    Action("aws.cloudwatch.get_metric_data", "aws", "POST", "/monitoring/GetMetricData",
           _INFRA_READ, "metrics:get", "aws:cloudwatch:metrics", "Get CloudWatch metric data",
           _t("aws.metric", "MetricDataQueries")),
    Action("aws.cloudwatch.put_metric_alarm", "aws", "POST", "/monitoring/PutMetricAlarm", _TAG,
           "alarm:put", "aws:cloudwatch:alarm/{AlarmName}", "Create or update an alarm",
           _t("aws.alarm", "AlarmName", "Dimensions")),
    Action("aws.cloudwatch.describe_alarms", "aws", "POST", "/monitoring/DescribeAlarms",
           _INFRA_READ, "alarms:describe", "aws:cloudwatch:alarms", "Describe alarms", _LISTED),
    # PagerDuty REST API v2.
    Action("pagerduty.incident.list", "pagerduty", "GET", "/incidents", _INC_READ,
           "incident:list", "pagerduty:incidents", "List incidents", _LISTED,
           query=_q("statuses=statuses[]", "service_ids=service_ids[]")),
    Action("pagerduty.incident.read", "pagerduty", "GET", "/incidents/{id}", _INC_READ,
           "incident:read", "pagerduty:incident:{id}", "Get an incident", _INCIDENT_T),
    Action("pagerduty.incident.create", "pagerduty", "POST", "/incidents", _INC_WRITE,
           "incident:create", "pagerduty:service:{incident.service.id}", "Create an incident",
           _t("pagerduty.service", "incident.service.id"),
           body=_incident_create),
    Action("pagerduty.incident.acknowledge", "pagerduty", "PUT", "/incidents/{id}", _INC_RESOLVE,
           "incident:acknowledge", "pagerduty:incident:{id}", "Acknowledge an incident",
           _INCIDENT_T,
           body=_incident_update("acknowledged"), match=("incident.status", "acknowledged")),
    Action("pagerduty.incident.resolve", "pagerduty", "PUT", "/incidents/{id}", _INC_RESOLVE,
           "incident:resolve", "pagerduty:incident:{id}", "Resolve an incident", _INCIDENT_T,
           body=_incident_update("resolved"), match=("incident.status", "resolved")),
    Action("pagerduty.note.create", "pagerduty", "POST", "/incidents/{id}/notes", _INC_WRITE,
           "note:create", "pagerduty:incident:{id}", "Add a note to an incident", _INCIDENT_T,
           body=lambda p: {"note": {"content": p["content"]}}),
)

CATALOG: Mapping[str, Action] = {a.name: a for a in ACTIONS}


def get_action(name: str) -> Action:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"no action named {name!r} in the catalogue") from None


def actions_for(service: str) -> tuple[Action, ...]:
    return tuple(a for a in ACTIONS if a.service == service)


def build_request(action_name: str, params: Params) -> PreparedRequest:
    """``(method, path, query, json_body)`` for ``action_name`` with flat ``params``.

    Path parameters come from ``params`` by name; query actions take their declared query
    parameters; other actions send the remaining parameters as the JSON body, or the body their
    catalogue entry builds (PagerDuty's nested ``incident`` / ``note`` objects).
    """
    action = get_action(action_name)
    missing = [p for p in action.path_params if p not in params]
    if missing:
        raise ValueError(f"{action_name} needs parameter {missing[0]!r}")
    path = _FIELD.sub(lambda m: _quote_segment(params[m.group(1)], m.group(0)), action.path)
    rest = {k: v for k, v in params.items() if k not in action.path_params}
    if action.method == "GET":
        wire = dict(action.query)
        unknown = set(rest) - set(wire)
        if unknown:
            raise ValueError(f"{action_name} takes no parameter {min(unknown)!r}")
        return action.method, path, {wire[k]: v for k, v in rest.items()}, None
    try:
        body = action.body(rest) if action.body else dict(rest)
    except KeyError as exc:
        raise ValueError(f"{action_name} needs parameter {exc.args[0]!r}") from None
    return action.method, path, {}, body if body or action.method != "DELETE" else None


def _quote_segment(value: object, placeholder: str) -> str:
    return quote(str(value), safe="/" if placeholder.endswith(":path}") else "")


def lookup(data: object, dotted: str) -> object:
    """``data["a"]["b"]`` for ``"a.b"``, or None where anything along the way is missing."""
    for part in dotted.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def resource_for(action: Action, values: Mapping[str, object], body: object) -> str:
    """The resource string of ``action``: its template filled from path and query values, then
    from the JSON body; lists are joined with commas, anything missing is ``*``."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name) if name in values else lookup(body, name)
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value[:20])
        return clean_text(str(value)) if value not in (None, "") else "*"

    return _FIELD.sub(fill, action.resource)[:512]


def clean_text(value: str) -> str:
    """A value fit for the audit trail: bounded, and never a token nor a piece of one (checked
    before truncation, which could otherwise cut a token into something that no longer looks
    like one)."""
    if contains_raw_jwt(value) or _JOSE_SEGMENT.search(value) \
            or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        return "[redacted]"
    return value[:_MAX_VALUE]
