"""One valid request per catalogue action, on resources the default test token's context
(service-x in prod, from CI) owns: the base the resource and extreme-number tests vary."""

from __future__ import annotations

from typing import Any

WEB1, WEB2, CANARY = "i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002", "i-0a1b2c3d4e5f60003"
STAGING_X, STAGING_Y = "i-0b1c2d3e4f5a60001", "i-0f9e8d7c6b5a40001"
SEEDED_INCIDENTS = ["P7X9K2Q", "PSTG4X1"]  # service-x's deploy incident: prod, staging
REPO = {"owner": "acme", "repo": "service-x"}
OWNED_QUERY = "avg:latency{service:service-x,env:prod}"
ON_WEB1 = [{"Name": "InstanceId", "Value": WEB1}]
ALARM = {"AlarmName": "service-x-cpu", "MetricName": "CPUUtilization", "Namespace": "AWS/EC2",
         "Statistic": "Average", "Period": 60, "EvaluationPeriods": 3, "Threshold": 80.5,
         "ComparisonOperator": "GreaterThanThreshold", "Dimensions": ON_WEB1}
METRIC_QUERY = {"Id": "cpu", "MetricStat": {"Metric": {
    "Namespace": "AWS/EC2", "MetricName": "CPUUtilization", "Dimensions": ON_WEB1},
    "Period": 60, "Stat": "Average"}}

EXAMPLES: dict[str, dict[str, Any]] = {
    "datadog.metrics.query": {"from": 1000, "to": 4600, "query": OWNED_QUERY},
    "datadog.event.create": {"title": "deployed", "tags": ["service:service-x", "env:prod"],
                             "date_happened": 1000},
    "datadog.event.list": {"start": 0, "end": 4600},
    "datadog.monitor.read": {"monitor_id": 1001},
    "datadog.monitor.mute": {"monitor_id": 1002, "scope": "host:web-1", "end": 5000},
    "github.pull.read": {**REPO, "pull_number": 124},
    "github.comment.create": {**REPO, "issue_number": 124, "body": "ok"},
    "github.comment.list": {**REPO, "issue_number": 124},
    "github.deployment_status.create": {**REPO, "deployment_id": 9001, "state": "success"},
    "github.deployment_status.list": {**REPO, "deployment_id": 9001},
    "github.branch.delete": {**REPO, "branch": "release/2024-q4"},
    "aws.ec2.describe_instances": {"InstanceIds": [WEB1]},
    "aws.ec2.create_tags": {"Resources": [WEB1], "Tags": [{"Key": "checked", "Value": "1"}]},
    "aws.ec2.delete_tags": {"Resources": [WEB1], "Tags": [{"Key": "checked"}]},
    "aws.ec2.terminate_instances": {"InstanceIds": [CANARY]},
    "aws.cloudwatch.get_metric_data": {"MetricDataQueries": [METRIC_QUERY], "StartTime": 0,
                                       "EndTime": 600},
    "aws.cloudwatch.put_metric_alarm": ALARM,
    "aws.cloudwatch.describe_alarms": {"AlarmNames": ["service-x-cpu"]},
    "pagerduty.incident.list": {"statuses": ["triggered"]},
    "pagerduty.incident.read": {"id": "P7X9K2Q"},
    "pagerduty.incident.create": {"title": "slow", "service_id": "PSVCX01"},
    "pagerduty.incident.acknowledge": {"id": "P7X9K2Q"},
    "pagerduty.incident.resolve": {"id": "P7X9K2Q", "resolution": "fine"},
    "pagerduty.note.create": {"id": "P7X9K2Q", "content": "looking"},
}
