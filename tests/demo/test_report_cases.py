"""The report on small hand-made results: escaping, denied edges, the baseline, and the guard
that refuses to write a raw token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infrabot.demo import Attack, DemoResult
from infrabot.demo._report import RawTokenInReport, write_report
from orchestrator.errors import InfraBotError
from orchestrator.runs import RunEvent

from ._html import edge_label, graph_xml, parse, svg_groups
from .conftest import RUN_ID, event, make_result, record

Write = Callable[[DemoResult], str]
SCRIPT = "<script>alert('x')</script>"
# Shaped like a compact JWS: header {"alg":"none"}, a payload, a signature.
RAW_JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"


def _root(seq: int = 2) -> RunEvent:
    return event(seq, "root_granted", None, may_act="agent:infrabot",
                 needed=["urn:infra:repo:read", "urn:infra:deploy:comment"],
                 granted=["urn:infra:repo:read", "urn:infra:deploy:comment"], dropped=[],
                 claims={"sub": "user:sam", "aud": "http://127.0.0.1:8700", "iat": 100,
                         "exp": 1000, "jti": "root-jti", "scope": "urn:infra:repo:read"})


def _manual_prod() -> list[RunEvent]:
    """InfraBot reads the PR, then is refused the exchange to comment on it."""
    return [event(1, "started", None, user="user:sam"), _root(),
            event(3, "exchanged", "agent:infrabot", **{"for": "github.pull.read"},
                  requested="urn:infra:repo:read", granted="urn:infra:repo:read", ms=4,
                  claims={"sub": "user:sam", "act": {"sub": "agent:infrabot"}, "iat": 100,
                          "exp": 700, "jti": "j1", "scope": "urn:infra:repo:read"}),
            event(4, "called", "agent:infrabot", service="github", action="pr:read",
                  method="GET", status=200, reason="ok", ms=3),
            event(5, "exchange_denied", "agent:infrabot", **{"for": "github.comment.create"},
                  requested="urn:infra:deploy:comment", error="invalid_scope",
                  reason="scope_not_grantable", ms=2),
            event(6, "finished", "agent:infrabot", status="denied", reason="denied")]


def test_values_from_payloads_are_escaped(write: Write) -> None:
    events = [event(1, "started", None, user="user:sam", commit=SCRIPT), _root(),
              event(3, "called", "agent:infrabot", service="github", action=SCRIPT,
                    method="GET", status=200, reason='"><img src=x onerror=alert(1)>')]
    result = make_result(events, commit=SCRIPT, audit=[record(1, resource=SCRIPT,
                                                              reason="<b>bold</b>")])
    document = write(result)
    tree = parse(document)
    assert SCRIPT not in document and "<img" not in document and "<b>bold" not in document
    assert len(tree.find_all("script")) == 2  # the report's own two inline scripts
    assert all(SCRIPT not in s.text() for s in tree.find_all("script"))
    assert SCRIPT in tree.find_all("h1")[0].text()
    assert tree.by_id("audit-table").rows()[0][4] == SCRIPT
    assert graph_xml(document) is not None  # the SVG stays well-formed XML


def test_refused_exchange_is_a_red_dashed_edge_with_its_reason(write: Write) -> None:
    document = write(make_result(_manual_prod(), status="denied"))
    svg = graph_xml(document)
    denied = svg_groups(svg, "denied")
    assert len(denied) == 1
    edge = denied[0]
    assert "edge" in edge.get("class", "").split()
    assert (edge.get("data-source"), edge.get("data-target")) == ("agent:infrabot", "github")
    assert edge_label(edge) == ["✗ invalid_scope (scope_not_grantable)", "deploy:comment"]
    calls = svg_groups(svg, "call")
    assert [(g.get("data-source"), g.get("data-target")) for g in calls] == [
        ("agent:infrabot", "github")]
    paths = [g.find("{http://www.w3.org/2000/svg}path") for g in (*calls, edge)]
    assert paths[0].get("d") != paths[1].get("d")  # type: ignore[union-attr]  # two curves
    idle = {g.get("data-id") for g in svg_groups(svg, "idle")}
    assert idle == {"agent:argocd", "agent:scanner", "agent:rollback", "agent:cleanup",
                    "datadog", "aws", "pagerduty"}
    tree = parse(document)
    row = next(r for r in tree.by_id("timeline").rows() if r[2] == "exchange_denied")
    assert "invalid_scope (scope_not_grantable)" in row[3]


def test_refused_call_and_refused_root_grant_are_denied_edges(write: Write) -> None:
    events = [event(1, "started", None), _root(),
              event(3, "call_denied", "agent:infrabot", service="datadog",
                    action="metrics:query", method="GET", status=403,
                    reason="insufficient_scope")]
    svg = graph_xml(write(make_result(events, status="denied")))
    [edge] = svg_groups(svg, "denied")
    assert (edge.get("data-target"), edge_label(edge)[0]) == ("datadog",
                                                               "✗ 403 insufficient_scope")
    root = [event(1, "started", None),
            event(2, "root_denied", None, needed=["urn:infra:repo:read"],
                  error="invalid_scope", reason="scope_not_grantable")]
    svg = graph_xml(write(make_result(root, status="denied")))
    [edge] = svg_groups(svg, "denied")
    assert (edge.get("data-source"), edge.get("data-target")) == ("user:sam",
                                                                   "agent:infrabot")


def test_baseline_section_shows_its_audit_table_and_what_it_loses(write: Write) -> None:
    static = make_result([event(1, "started", None)]).run.model_copy(
        update={"run_id": "run-static", "mode": "static"})
    anonymous = [record(n, performed_by=None, on_behalf_of=None, chain=(), run_id=None)
                 for n in (7, 8)]
    attacks = [Attack("forged token", "a token signed by someone else", "bad_signature",
                      True, 401, "invalid_token", "bad_signature")]
    tree = parse(write(make_result([event(1, "started", None), _root()], static_run=static,
                                   static_audit=anonymous, attacks=attacks)))
    section = tree.by_id("baseline-section")
    assert "on behalf of nobody" in section.text()
    rows = tree.by_id("baseline-audit-table").rows()
    assert len(rows) == 2 and all(r[2] == "-" and r[3] == "-" for r in rows)
    assert tree.by_id("attacks").rows()[0][:2] == ["forged token",
                                                   "a token signed by someone else"]


@pytest.mark.parametrize("where", ["event", "detail", "attack"])
def test_guard_refuses_to_write_a_raw_token(where: str, tmp_path: Path) -> None:
    events = [event(1, "started", None), _root()]
    changes: dict[str, Any] = {}
    if where == "event":
        changes["commit"] = f"Bearer {RAW_JWT}"
    elif where == "detail":
        events.append(event(3, "exchanged", "agent:infrabot", **{"for": "github.pull.read"},
                            claims={"sub": "user:sam", "leaked": f"Bearer {RAW_JWT}"}))
    else:
        changes["attacks"] = [Attack("leak", RAW_JWT, "x", True, 401, "invalid_token", "x")]
    path = tmp_path / "report.html"
    path.write_text("previous report", encoding="utf-8")
    with pytest.raises(RawTokenInReport) as caught:
        write_report(make_result(events, **changes), path)
    assert isinstance(caught.value, InfraBotError) and isinstance(caught.value, ValueError)
    assert caught.value.reason == "raw_token_in_report"
    assert RAW_JWT not in str(caught.value)
    assert path.read_text(encoding="utf-8") == "previous report"


def test_report_of_a_hand_made_run_names_it(write: Write) -> None:
    tree = parse(write(make_result([event(1, "started", None), _root()])))
    assert RUN_ID in tree.find_all("header")[0].text()
    assert len(tree.by_id("audit-table").rows()) == 1
