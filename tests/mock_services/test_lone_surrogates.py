"""A JSON string may spell a lone surrogate (``"\\ud800"``), which is no Unicode text: the body
is refused as malformed (400 ``malformed_json``) before anything reads it, audit text holding
one is redacted, and a record that still cannot be built is written with the request's own
values redacted: never a 500, always exactly one record."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.catalog import clean_text

ALARM = "/monitoring/PutMetricAlarm"
JSON = {"Content-Type": "application/json"}
# The same lone surrogate as a JSON escape, and as the raw bytes json.loads also accepts.
BODIES = [b'{"AlarmName": "\\ud800"}', b'{"AlarmName": "x\xed\xa0\x80"}',
          b'{"\\udfff": "key"}']


@pytest.fixture
def aws(stack_factory: Any) -> Any:
    return stack_factory(services=("aws",))


def test_clean_text_redacts_a_lone_surrogate() -> None:
    assert clean_text("a\ud800") == clean_text("\udfffb") == "[redacted]"
    assert clean_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"  # a pair is text


@pytest.mark.parametrize("body", BODIES)
def test_a_body_with_a_lone_surrogate_is_400_and_audited(aws, http, body):
    token = aws.token("aws")
    response = http.post(aws.urls["aws"] + ALARM, content=body,
                         headers={**JSON, "Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "malformed_json"
    [record] = aws.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", "malformed_json", 400)
    assert record.on_behalf_of == "user:sam"
    assert not aws.apps["aws"].state.service.alarms  # the handler never ran


@pytest.mark.parametrize("body", BODIES)
def test_without_a_credential_it_is_401_and_audited(aws, http, body):
    response = http.post(aws.urls["aws"] + ALARM, content=body, headers=JSON)
    assert response.status_code == 401
    assert response.json()["reason"] == "missing_token"
    [record] = aws.records(response)
    assert (record.decision, record.reason, record.status) == ("deny", "missing_token", 401)


def test_a_record_that_fails_validation_is_written_redacted_not_a_500(
        aws, http, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever path lets a value the record refuses through (here: the resource name), the
    answer stands and its one record is written with the request's own values redacted."""
    monkeypatch.setattr("mock_services._enforcement.resource_for",
                        lambda *_: "aws:cloudwatch:alarm/\ud800")
    token = aws.token("aws")
    response = aws.call(http, "aws.cloudwatch.describe_alarms", {}, token=token)
    assert response.status_code == 200, response.text
    [record] = aws.records(response)
    assert record.resource == "[redacted]"
    assert record.status == response.status_code
    assert record.on_behalf_of == "user:sam"
