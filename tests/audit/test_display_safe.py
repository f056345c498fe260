"""Display-safe text: control characters, bidirectional overrides and other invisible characters
never reach a terminal, a JSON export or the HTML report raw; each output is tested.

``HOSTILE`` is what an unauthenticated client can put in a path or a header: an ANSI escape that
rewrites the line, C1 controls (NEL, CSI), every bidirectional override, embedding, isolate and
mark, zero-width characters, line separators, a lone surrogate and a tag character.
"""

from __future__ import annotations

import io
import json
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from infrabot.cli._audit import audit
from infrabot.demo import DemoResult, render_demo
from infrabot.demo._report import render_report
from orchestrator._display import display_safe, safe_html, safe_json
from orchestrator.audit import AuditStore, StoredRecord, render_table, to_jsonl, to_ocsf
from orchestrator.runs import Run, RunEvent, render_run, render_runs
from tests._events import detail
from tests.demo.conftest import event, make_result

BIDI = ("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
HOSTILE = ("x\x1b[2K\r\x07allow\x85\x9b31m" + BIDI + "\u200b\u200d\ufeff\u2028\u2029"
           "\ud800\U000e0041\x00\x7f\tend")
RECORDABLE = HOSTILE.replace("\ud800", "")  # models refuse a lone surrogate outright
STORABLE = RECORDABLE.replace("\x00", "")  # stores refuse a NUL (PostgreSQL keeps none)
SAFE_FORM = ("x\\u001b[2K\\r\\u0007allow\\u0085\\u009b31m\\u202a\\u202b\\u202c\\u202d\\u202e"
             "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c\\u200b\\u200d\\ufeff\\u2028"
             "\\u2029\\ud800\\udb40\\udc41\\u0000\\u007f\\tend")


def unsafe(text: str) -> list[str]:
    """The characters of ``text`` a terminal or a browser would act on or hide."""
    return [c for c in text if c not in "\n" and not c.isprintable()]


def test_display_safe_shows_every_unsafe_character_as_an_escape() -> None:
    assert display_safe(HOSTILE) == SAFE_FORM
    assert unsafe(display_safe(HOSTILE)) == []
    assert display_safe(SAFE_FORM) == SAFE_FORM  # idempotent
    assert display_safe("user:sam → agent:argocd ✓ café 東京") == "user:sam → agent:argocd ✓ café 東京"
    assert display_safe(None) == "None" and display_safe(42) == "42"


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x80, 0xA0), 0x202A, 0x202E, 0x2066,
                                                    0x2069, 0x200E, 0x200F, 0x061C, 0x180E)])
def test_each_c1_and_bidi_control_is_neutralised(char: str) -> None:
    assert unicodedata.category(char) in ("Cc", "Cf")
    assert display_safe(f"a{char}b") == f"a\\u{ord(char):04x}b"


def test_safe_json_keeps_the_data_exact_and_the_text_safe() -> None:
    value = {"resource": HOSTILE, "list": [BIDI], HOSTILE: 1}
    for options in ({}, {"indent": 2}, {"separators": (",", ":")}):
        text = safe_json(value, **options)
        assert unsafe(text) == []
        assert json.loads(text) == value


def test_safe_html_escapes_and_neutralises() -> None:
    assert safe_html(f"<b>{BIDI}</b>\"'") == (
        "&lt;b&gt;" + display_safe(BIDI) + "&lt;/b&gt;&quot;&#x27;")
    assert safe_html(None) == "-"


def _console_text(renderable: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None, force_terminal=False).print(renderable)
    return buffer.getvalue()


def _record(**fields: object) -> StoredRecord:
    values: dict[str, object] = {
        "time": datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC), "service": "aws",
        "action": "ec2:describe", "resource": RECORDABLE, "decision": "deny",
        "reason": "missing_token", "performed_by": f"agent:{BIDI}x", "on_behalf_of": None,
        "id": 1, "writer": "w", "seq": 1, "prev_hash": "0" * 64, "hash": "1" * 64}
    return StoredRecord(**{**values, **fields})


def test_audit_table() -> None:
    out = _console_text(render_table([_record()]))
    assert unsafe(out) == [] and "\\u202e" in out and "\\u001b[2K" in out


def test_audit_query_in_the_terminal_and_as_json(tmp_path: Path, make_record) -> None:
    db = tmp_path / "audit.sqlite3"
    with AuditStore(db, writer="w") as store:
        store.append(make_record(resource=STORABLE, performed_by=BIDI))
    for args in ([], ["--json"]):
        result = CliRunner().invoke(audit, ["query", "--db", str(db), *args])
        assert result.exit_code == 0 and unsafe(result.stdout) == []
        assert "\\u202e" in result.stdout
    (item,) = json.loads(result.stdout)
    assert item["performed_by"] == BIDI  # the data is exact, only its text form is escaped


def test_json_lines_and_ocsf_export(tmp_path: Path, make_record) -> None:
    db = tmp_path / "audit.sqlite3"
    with AuditStore(db, writer="w") as store:
        stored = store.append(make_record(resource=STORABLE))
    buffer = io.StringIO()
    to_jsonl([stored], buffer)
    assert unsafe(buffer.getvalue()) == []
    exported = StoredRecord.model_validate_json(buffer.getvalue())
    assert exported.resource == stored.resource and exported.hash == stored.hash
    for args in (["--format", "ocsf"], []):
        result = CliRunner().invoke(audit, ["export", "--db", str(db), *args])
        assert result.exit_code == 0 and unsafe(result.stdout) == []
    assert json.loads(result.stdout)["resource"] == stored.resource
    assert to_ocsf(stored)["resources"] == [{"uid": stored.resource}]


def test_audit_verify_output(tmp_path: Path, make_record, raw_db) -> None:
    db = tmp_path / "audit.sqlite3"
    with AuditStore(db, writer=f"w{BIDI}") as store:
        store.append(make_record())
    with raw_db(db) as conn:
        conn.execute("UPDATE records SET resource = ?", (RECORDABLE,))
    result = CliRunner().invoke(audit, ["verify", "--db", str(db), "--state-dir",
                                        str(tmp_path)])
    assert result.exit_code == 1 and unsafe(result.stdout + result.stderr) == []
    assert "writer w\\u202a" in result.stdout


def _run(**fields: object) -> Run:
    now = datetime(2025, 7, 18, 16, 10, 3, tzinfo=UTC)
    values: dict[str, object] = {
        "run_id": "run-1", "workflow": "post-deploy", "user": f"user:{BIDI}sam",
        "status": "denied", "reason": HOSTILE, "trigger": "manual", "environment": "prod",
        "repository": f"acme/{BIDI}", "commit": "abc", "service": "service-x", "pr": None,
        "mode": "delegated", "created_at": now, "finished_at": now,
        "events": [RunEvent(run_id="run-1", seq=1, time=now, kind="call_denied",
                            agent="agent:infrabot", detail=detail(
                                "call_denied", reason=HOSTILE, method="[bold]GET", status=403))]}
    return Run(**{**values, **fields})


def test_runs_show_and_list() -> None:
    for renderable in (render_run(_run()), render_runs([_run()])):
        out = _console_text(renderable)
        assert unsafe(out) == [] and "\\u202e" in out
    assert "[bold]GET" in _console_text(render_run(_run()))  # shown, not read as markup


def _hostile_result() -> DemoResult:
    events = [event(1, "started", user=HOSTILE),
              event(2, "exchanged", "agent:infrabot", **{"for": HOSTILE, "requested": BIDI,
                                                        "granted": BIDI, "claims": {
                                                            "sub": f"user:{BIDI}",
                                                            "act": {"sub": HOSTILE}}}),
              event(3, "call_denied", "agent:infrabot", method="GET", action=HOSTILE,
                    status=403, reason=f"[red]{BIDI}")]
    return make_result(events, status="denied", audit=[_record()])


def test_demo_story_in_the_terminal() -> None:
    buffer = io.StringIO()
    render_demo(_hostile_result(), Console(file=buffer, width=200, color_system=None))
    out = buffer.getvalue()
    assert unsafe(out) == [] and "\\u202e" in out and "[red]\\u202a" in out


def test_html_report() -> None:
    html = render_report(_hostile_result())
    assert unsafe(html) == []
    assert "\\u202e" in html and "\\u001b[2K" in html
