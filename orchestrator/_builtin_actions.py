"""The built-in services' operations: Datadog, GitHub, AWS and PagerDuty (the table behind
:mod:`orchestrator.catalog`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator._action import LISTING, Action, Params, Target


def _t(kind: str, *fields: str) -> Target:
    return Target(kind, fields)


_LISTED = Target(LISTING)


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
