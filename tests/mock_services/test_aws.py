"""Mock AWS behaviour: instances, tags, termination, CloudWatch; and the real wire forms."""

from __future__ import annotations

WEB1, CANARY = "i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60003"
SERVICE_X = [{"Name": "tag:service", "Values": ["service-x"]}]


def ids(body: dict) -> set[str]:
    return {i["InstanceId"] for r in body["Reservations"] for i in r["Instances"]}


def test_instances_are_seeded_for_service_x(stack, http):
    body = stack.call(http, "aws.ec2.describe_instances", {"Filters": SERVICE_X}).json()
    assert len(ids(body)) == 3 and WEB1 in ids(body)
    instance = body["Reservations"][0]["Instances"][0]
    assert {"Key": "service", "Value": "service-x"} in instance["Tags"]
    assert instance["State"] == {"Code": 16, "Name": "running"}


def test_the_real_wire_forms_reach_the_same_operation(stack, http):
    token = stack.token("aws")
    json_protocol = http.post(stack.urls["aws"] + "/", content=b'{"InstanceIds": ["%s"]}'
                              % WEB1.encode(), headers={
                                  "Authorization": f"Bearer {token}",
                                  "X-Amz-Target": "AmazonEC2.DescribeInstances",
                                  "Content-Type": "application/x-amz-json-1.1"})
    query_style = http.post(stack.urls["aws"] + "/ec2?Action=DescribeInstances",
                            json={"InstanceIds": [WEB1]},
                            headers={"Authorization": f"Bearer {token}"})
    assert ids(json_protocol.json()) == ids(query_style.json()) == {WEB1}
    [record] = stack.records(json_protocol)
    assert (record.action, record.resource) == ("instances:describe", f"aws:ec2:{WEB1}")
    alarms = http.post(stack.urls["aws"] + "/", content=b"{}", headers={
        "Authorization": f"Bearer {token}",
        "X-Amz-Target": "GraniteServiceVersion20100801.DescribeAlarms",
        "Content-Type": "application/x-amz-json-1.0"})
    assert alarms.status_code == 200 and "MetricAlarms" in alarms.json()


def test_tags_are_created_and_deleted(stack_factory, http):
    stack = stack_factory(services=("aws",))
    state = stack.apps["aws"].state.service
    created = stack.call(http, "aws.ec2.create_tags", {
        "Resources": [WEB1], "Tags": [{"Key": "deployed-commit", "Value": "9f2c1e7"}]},
        actors=("agent:argocd", "agent:infrabot"), scope="urn:infra:infrastructure:tag")
    assert created.json() == {"Return": True}
    assert state.tags(WEB1)["deployed-commit"] == "9f2c1e7"
    assert state.changes[-1] == ("CreateTags", WEB1, "agent:argocd", "user:sam")
    stack.call(http, "aws.ec2.delete_tags", {"Resources": [WEB1],
                                             "Tags": [{"Key": "deployed-commit",
                                                       "Value": "other"}]})
    assert "deployed-commit" in state.tags(WEB1)  # value did not match
    stack.call(http, "aws.ec2.delete_tags", {"Resources": [WEB1],
                                             "Tags": [{"Key": "deployed-commit"}]})
    assert "deployed-commit" not in state.tags(WEB1)


def test_the_stale_canary_is_terminated(stack_factory, http):
    stack = stack_factory(services=("aws",))
    stale = [{"Name": "tag:deploy", "Values": ["stale"]}]
    found = ids(stack.call(http, "aws.ec2.describe_instances", {"Filters": stale}).json())
    assert found == {CANARY}
    gone = stack.call(http, "aws.ec2.terminate_instances", {"InstanceIds": [CANARY]},
                      actors=("agent:cleanup", "agent:argocd", "agent:infrabot"),
                      scope="urn:infra:infrastructure:clean").json()
    assert gone["TerminatingInstances"][0]["CurrentState"]["Name"] == "terminated"
    running = [{"Name": "instance-state-name", "Values": ["running"]}, *SERVICE_X]
    left = ids(stack.call(http, "aws.ec2.describe_instances", {"Filters": running}).json())
    assert CANARY not in left and len(left) == 2


def test_cloudwatch_metric_data_and_alarms(stack, http):
    query = {"Id": "cpu", "MetricStat": {"Metric": {
        "Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
        "Dimensions": [{"Name": "InstanceId", "Value": WEB1}]}, "Period": 60, "Stat": "Average"}}
    data = stack.call(http, "aws.cloudwatch.get_metric_data", {
        "MetricDataQueries": [query], "StartTime": 0, "EndTime": 600}).json()
    [result] = data["MetricDataResults"]
    assert (result["Id"], result["StatusCode"], len(result["Values"])) == ("cpu", "Complete", 10)
    alarm = {"AlarmName": "service-x-cpu", "MetricName": "CPUUtilization",
             "Namespace": "AWS/EC2", "Statistic": "Average", "Period": 60,
             "EvaluationPeriods": 3, "Threshold": 80, "ComparisonOperator": "GreaterThanThreshold",
             "Dimensions": [{"Name": "InstanceId", "Value": WEB1}]}
    assert stack.call(http, "aws.cloudwatch.put_metric_alarm", alarm).status_code == 200
    described = stack.call(http, "aws.cloudwatch.describe_alarms",
                           {"AlarmNames": ["service-x-cpu"]}).json()["MetricAlarms"]
    assert described[0]["AlarmArn"].endswith(":alarm:service-x-cpu")
