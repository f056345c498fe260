"""AuditRecord: UTC times, frozen, and never a raw token; the package's public surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from orchestrator import audit
from orchestrator.audit import AuditRecord, contains_raw_jwt

TOKEN = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"


def test_public_surface_is_pinned() -> None:
    assert sorted(audit.__all__) == sorted(
        [
            "GENESIS_HASH",
            "AnchorPolicy",
            "AuditKeys",
            "AuditRecord",
            "AuditStore",
            "CheckpointRow",
            "Checkpointer",
            "Decision",
            "Problem",
            "ProblemKind",
            "StoredRecord",
            "TrailReport",
            "VerifyReport",
            "WriterAnchor",
            "activity_id",
            "check_trail",
            "checkpoint_ticker",
            "contains_raw_jwt",
            "public_document",
            "render_table",
            "to_jsonl",
            "to_ocsf",
            "trusted_keys",
        ]
    )


def test_time_is_normalised_to_utc(make_record) -> None:
    local = datetime(2025, 7, 18, 18, 10, 3, tzinfo=timezone(timedelta(hours=2)))
    rec = make_record(time=local)
    assert rec.time == datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)
    assert rec.time.tzinfo is UTC
    assert rec.content()["time"] == "2025-07-18T16:10:03.000000Z"


def test_naive_time_is_refused(make_record) -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        make_record(time=datetime(2025, 7, 18, 16, 10, 3))


def test_record_is_frozen(make_record) -> None:
    rec = make_record()
    with pytest.raises(ValidationError):
        rec.decision = "deny"  # type: ignore[misc]


def test_decision_is_allow_or_deny(make_record) -> None:
    with pytest.raises(ValidationError):
        make_record(decision="maybe")


@pytest.mark.parametrize(
    "field",
    [
        {"resource": TOKEN},
        {"resource": f"Bearer {TOKEN}"},
        {"reason": TOKEN},
        {"jti": TOKEN},
        {"request_id": TOKEN},
        {"chain": ("agent:infrabot", TOKEN)},
        {"scopes": (TOKEN,)},
        {"context": {"commit": TOKEN}},
        {"context": {TOKEN: "x"}},
    ],
)
def test_raw_jwt_is_refused_in_every_string_field(make_record, field) -> None:
    with pytest.raises(ValueError, match="looks like a raw JWT") as info:
        make_record(**field)
    assert TOKEN not in str(info.value)
    assert "c2lnbmF0dXJl" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TOKEN, True),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", True),  # unsecured JWT: empty signature
        (f"{TOKEN}.aXY.dGFn", True),  # a JWE has five segments
        ("user:sam", False),
        ("service-x.prod.eu", False),
        ("eyJ-not-a-token", False),
        ("a.b.c", False),
        # glued after other base64url characters, or after a dotted prefix
        (f"jwt_{TOKEN}", True),
        (f"Bearer%20{TOKEN}", True),
        (f"authorization=Bearer-{TOKEN}", True),
        (f"host.example.{TOKEN}", True),
        ("heyJude.mp3.bak", False),  # "eyJ" in a word, no JSON payload after it
        ("cache_eyJkey.json.gz", False),
    ],
)
def test_contains_raw_jwt(text: str, expected: bool) -> None:
    assert contains_raw_jwt(text) is expected


def test_content_is_json_values(make_record) -> None:
    content = make_record().content()
    assert content["chain"] == ["agent:infrabot", "user:sam"]
    assert content["scopes"] == ["urn:infra:metrics:query"]
    assert set(content) == set(AuditRecord.model_fields)


@pytest.mark.parametrize("text", ["eyJ" * 200_000, "a." * 200_000, "eyJa.eyJb." * 50_000,
                                  "x" * 400_000 + "eyJ"])
def test_contains_raw_jwt_reads_a_long_text_once(text: str) -> None:
    """No text is rescanned from every ``eyJ`` or every dot (the search is linear): these
    finish at once instead of taking minutes."""
    assert contains_raw_jwt(text) is text.startswith("eyJa")
