"""Export: JSON lines parse back; OCSF API Activity fields; the people-facing table."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.audit import (
    AuditRecord,
    AuditStore,
    StoredRecord,
    activity_id,
    render_table,
    to_jsonl,
    to_ocsf,
)


@pytest.fixture
def stored(sqlite_path: Path, make_record) -> list[StoredRecord]:
    with AuditStore(sqlite_path, writer="svc") as store:
        store.append(make_record())
        store.append(
            make_record(
                service="pagerduty",
                action="alert:raise",
                resource="pagerduty-service",
                decision="deny",
                reason="insufficient_scope",
                status=403,
            )
        )
        return store.query()


def test_jsonl_parses_back_to_the_same_records(stored: list[StoredRecord]) -> None:
    buffer = io.StringIO()
    assert to_jsonl(stored, buffer) == 2
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    parsed = [StoredRecord.model_validate(json.loads(line)) for line in lines]
    assert parsed == stored
    first = json.loads(lines[0])
    assert first["time"] == "2025-07-18T16:10:03.000000Z"
    assert (first["writer"], first["seq"], first["chain"]) == (
        "svc",
        1,
        ["agent:infrabot", "user:sam"],
    )


def test_jsonl_of_plain_records(make_record) -> None:
    buffer = io.StringIO()
    to_jsonl([make_record()], buffer)
    assert AuditRecord.model_validate_json(buffer.getvalue()) == make_record()


def test_ocsf_api_activity_fields(stored: list[StoredRecord]) -> None:
    event = to_ocsf(stored[0])
    assert (event["category_uid"], event["class_uid"]) == (6, 6003)
    assert (event["activity_id"], event["activity_name"], event["type_uid"]) == (2, "Read", 600302)
    assert event["time"] == int(datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC).timestamp()) * 1000
    assert (event["status"], event["status_id"], event["status_detail"]) == ("Success", 1, "ok")
    assert event["severity_id"] == 1
    assert event["actor"]["user"]["uid"] == "user:sam"
    assert event["actor"]["invoked_by"] == "agent:infrabot"
    assert event["api"] == {
        "operation": "metrics:query",
        "service": {"name": "datadog"},
        "request": {"uid": "req-1"},
        "response": {"code": 200},
    }
    assert event["resources"] == [{"uid": "datadog-dashboard"}]
    assert event["metadata"]["product"] == {"name": "InfraBot Chains", "vendor_name": "InfraBot"}
    assert event["metadata"]["version"] == "1.1.0"
    assert event["metadata"]["correlation_uid"] == "run-1"
    unmapped = event["unmapped"]
    assert unmapped["chain"] == ["agent:infrabot", "user:sam"]
    assert unmapped["scopes"] == ["urn:infra:metrics:query"]
    assert unmapped["context"]["repository"] == "acme/service-x"
    assert (unmapped["jti"], unmapped["reason"]) == ("jti-0001abcd", "ok")
    assert unmapped["audit"]["hash"] == stored[0].hash
    json.dumps(event)  # JSON-ready


def test_ocsf_denial_is_a_failure(stored: list[StoredRecord]) -> None:
    event = to_ocsf(stored[1])
    assert (event["status"], event["status_id"]) == ("Failure", 2)
    assert event["status_detail"] == "insufficient_scope"
    assert event["status_code"] == "403"
    assert (event["activity_id"], event["type_uid"]) == (1, 600301)


def test_ocsf_without_optional_fields(make_record) -> None:
    event = to_ocsf(
        make_record(on_behalf_of=None, performed_by=None, request_id=None, run_id=None, status=None)
    )
    assert "user" not in event["actor"] and "invoked_by" not in event["actor"]
    assert "request" not in event["api"] and "correlation_uid" not in event["metadata"]
    assert "status_code" not in event


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("metrics:query", 2),
        ("deploy:create", 1),
        ("alert:raise", 1),
        ("comment:post", 1),
        ("token_exchange", 1),
        ("repo:read", 2),
        ("pr:merge", 3),
        ("rollback:init", 1),
        ("deploy:rollback", 3),
        ("token:revoke", 4),
        ("s3:delete-object", 4),
        ("dance", 99),
    ],
)
def test_activity_id_from_the_action_verb(action: str, expected: int) -> None:
    assert activity_id(action) == expected


def _render(records: list[StoredRecord] | list[AuditRecord]) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render_table(records))
    return console.export_text()


def test_table_has_the_article_columns_then_ours(stored: list[StoredRecord]) -> None:
    table = render_table(stored)
    assert [str(column.header) for column in table.columns] == [
        "Timestamp",
        "Action",
        "Performed by",
        "On behalf of",
        "Resource",
        "Service",
        "Decision",
        "Reason",
    ]
    text = _render(stored)
    assert "2025-07-18T16:10:03Z" in text
    for value in (
        "metrics:query",
        "agent:infrabot",
        "user:sam",
        "datadog-dashboard",
        "pagerduty-service",
        "deny",
        "insufficient_scope",
    ):
        assert value in text


def test_table_shows_record_values_literally(make_record) -> None:
    text = _render([make_record(resource="[white on white]hidden[/]")])
    assert "[white on white]hidden[/]" in text
