"""Request and answer shapes of the mock AWS operations, with the AWS parameter names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mock_services._numbers import EpochSeconds, Finite

Ids = list[str]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tag(BaseModel):
    Key: str = Field(min_length=1, max_length=128)
    Value: str = Field("", max_length=256)


class TagKey(_In):
    Key: str = Field(min_length=1, max_length=128)
    Value: str | None = Field(None, max_length=256)


class Filter(_In):
    Name: str = Field(max_length=128)
    Values: list[str] = Field(max_length=50)


class InstanceState(BaseModel):
    Code: int
    Name: str


class Instance(BaseModel):
    InstanceId: str
    InstanceType: str
    ImageId: str = "ami-0c55b159cbfafe1f0"
    State: InstanceState
    Tags: list[Tag]
    LaunchTime: str
    PrivateIpAddress: str


class Reservation(BaseModel):
    ReservationId: str
    OwnerId: str = "123456789012"
    Instances: list[Instance]


class DescribeInstancesIn(_In):
    InstanceIds: list[str] = Field(default_factory=list, max_length=100)
    Filters: list[Filter] = Field(default_factory=list, max_length=20)


class DescribeInstancesOut(BaseModel):
    Reservations: list[Reservation]


class CreateTagsIn(_In):
    Resources: Ids = Field(min_length=1, max_length=100)
    Tags: list[Tag] = Field(min_length=1, max_length=50)


class DeleteTagsIn(_In):
    Resources: Ids = Field(min_length=1, max_length=100)
    Tags: list[TagKey] = Field(default_factory=list, max_length=50)


class ReturnOut(BaseModel):
    Return: bool = True


class TerminateIn(_In):
    InstanceIds: Ids = Field(min_length=1, max_length=100)


class StateChange(BaseModel):
    InstanceId: str
    CurrentState: InstanceState
    PreviousState: InstanceState


class TerminateOut(BaseModel):
    TerminatingInstances: list[StateChange]


class Dimension(_In):
    Name: str = Field(min_length=1, max_length=255)
    Value: str = Field(min_length=1, max_length=1024)


class Metric(_In):
    Namespace: str = Field(min_length=1, max_length=255)
    MetricName: str = Field(min_length=1, max_length=255)
    Dimensions: list[Dimension] = Field(default_factory=list, max_length=30)


class MetricStat(_In):
    Metric: Metric
    Period: int = Field(ge=1, le=86400)
    Stat: str = Field(max_length=32)


class MetricDataQuery(_In):
    Id: str = Field(pattern=r"^[a-z][a-zA-Z0-9_]{0,254}$")
    MetricStat: MetricStat
    Label: str | None = Field(None, max_length=255)


class GetMetricDataIn(_In):
    MetricDataQueries: list[MetricDataQuery] = Field(min_length=1, max_length=20)
    StartTime: EpochSeconds
    EndTime: EpochSeconds


class MetricDataResult(BaseModel):
    Id: str
    Label: str
    Timestamps: list[int]
    Values: list[float]
    StatusCode: str = "Complete"


class GetMetricDataOut(BaseModel):
    MetricDataResults: list[MetricDataResult]
    Messages: list[str] = []


class MetricAlarm(BaseModel):
    AlarmName: str = Field(min_length=1, max_length=255)
    AlarmDescription: str = Field("", max_length=1024)
    MetricName: str = Field(min_length=1, max_length=255)
    Namespace: str = Field(min_length=1, max_length=255)
    Statistic: Literal["SampleCount", "Average", "Sum", "Minimum", "Maximum"]
    Dimensions: list[Dimension] = Field(default_factory=list, max_length=30)
    Period: int = Field(ge=1, le=86400)
    EvaluationPeriods: int = Field(ge=1, le=100)
    Threshold: Finite
    ComparisonOperator: Literal["GreaterThanOrEqualToThreshold", "GreaterThanThreshold",
                                "LessThanThreshold", "LessThanOrEqualToThreshold"]


class PutMetricAlarmIn(MetricAlarm):
    model_config = ConfigDict(extra="forbid")


class StoredAlarm(MetricAlarm):
    AlarmArn: str
    StateValue: str = "INSUFFICIENT_DATA"


class DescribeAlarmsIn(_In):
    AlarmNames: list[str] = Field(default_factory=list, max_length=100)


class DescribeAlarmsOut(BaseModel):
    MetricAlarms: list[StoredAlarm]
