"""The HTML run report of a real demo run: graph, timeline, decoded tokens, audit trail, attacks;
one self-contained file with no raw token in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infrabot.demo import DemoResult
from infrabot.demo._report import AUDIT_COLUMNS, DECODED
from orchestrator.audit import contains_raw_jwt
from orchestrator.runs import Called, Exchanged, HandedOff, RootGranted

from ._html import SVG_NS, Element, edge_label, graph_xml, parse, svg_groups

AGENTS = ("agent:infrabot", "agent:rollback", "agent:argocd", "agent:scanner", "agent:cleanup")
SERVICES = ("datadog", "github", "aws", "pagerduty")
URL_ATTRS = ("src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data",
             "background", "manifest", "ping")


def short(scope: object) -> str:
    return str(scope).replace("urn:infra:", "")


@pytest.fixture(scope="module")
def document(report_file: Path) -> str:
    return report_file.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tree(document: str) -> Element:
    return parse(document)


def test_report_loads_nothing_from_anywhere(document: str, tree: Element) -> None:
    for element in tree.iter():
        for name in URL_ATTRS:
            value = element.attrs.get(name, "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (element.tag, name)
    assert not tree.find_all("link") and not tree.find_all("iframe") and not tree.find_all("img")
    assert all("src" not in s.attrs for s in tree.find_all("script"))
    styles = " ".join(s.text() for s in tree.find_all("style"))
    assert "@import" not in styles and "@font-face" not in styles
    assert all(target.strip().startswith("#")
               for target in re.findall(r"url\(\s*([^)]*)\)", document))


def test_report_holds_no_raw_token(document: str) -> None:
    assert not contains_raw_jwt(document)
    assert "eyJ" not in document


def test_header_names_the_event_and_the_run(demo_result: DemoResult, tree: Element) -> None:
    header = tree.find_all("header")[0].text()
    run = demo_result.run
    for value in ("sam", "service-x", "prod", "9f2c1e7", "#124", run.run_id, run.status,
                  f"{run.duration_ms} ms", "post-deploy"):
        assert value in header


def test_graph_has_the_user_every_agent_and_the_four_services(document: str) -> None:
    svg = graph_xml(document)
    nodes = {g.get("data-id") for g in svg_groups(svg, "node")}
    assert nodes == {"user:sam", *AGENTS, *SERVICES}
    kinds = {g.get("data-id"): g.get("class", "").split()[1] for g in svg_groups(svg, "node")}
    assert kinds["user:sam"] == "user" and {kinds[a] for a in AGENTS} == {"agent"}
    idle = {g.get("data-id") for g in svg_groups(svg, "idle")}
    assert idle == {"agent:rollback"}  # the branch not taken
    assert {kinds[s] for s in SERVICES} == {"service"}


def test_graph_lays_out_the_chain_left_to_right(document: str) -> None:
    """Columns by depth: the fan-out's branches in one column, on rows of their own; the
    branch not taken apart, below everything the run reached."""
    svg = graph_xml(document)
    at = {g.get("data-id"): (float(rect.get("x", "nan")), float(rect.get("y", "nan")))
          for g in svg_groups(svg, "node") if (rect := g.find(f"{SVG_NS}rect")) is not None}
    x = {name: xy[0] for name, xy in at.items()}
    assert x["user:sam"] < x["agent:infrabot"] < x["agent:argocd"] == x["agent:scanner"] < \
        x["agent:cleanup"]
    assert at["agent:argocd"][1] != at["agent:scanner"][1]
    assert at["agent:rollback"][1] > max(y for name, (_, y) in at.items()
                                         if name != "agent:rollback")


def test_hand_off_edges_are_labelled_with_the_scopes_handed_off(
        demo_result: DemoResult, document: str) -> None:
    svg = graph_xml(document)
    edges = {(g.get("data-source"), g.get("data-target")): edge_label(g)
             for g in svg_groups(svg, "handoff")}
    events = demo_result.run.events
    root = next(e for e in events if e.kind == "root_granted").detail
    handed = {(e.agent, e.detail.to): (e.detail.scope or "").split()
              for e in events if isinstance(e.detail, HandedOff)}
    assert isinstance(root, RootGranted)
    expected = {("user:sam", "agent:infrabot"): root.granted, **handed}
    joins = {("agent:argocd", "agent:cleanup"), ("agent:scanner", "agent:cleanup")}
    assert set(edges) == {("user:sam", "agent:infrabot"), ("agent:infrabot", "agent:argocd"),
                          ("agent:infrabot", "agent:scanner"), ("agent:infrabot", "agent:cleanup"),
                          *joins}
    for pair, scopes in expected.items():
        assert sorted(edges[pair][1:]) == sorted(short(s) for s in scopes), pair
    assert edges[("agent:infrabot", "agent:argocd")][0].startswith("fan-out")
    assert edges[("agent:infrabot", "agent:cleanup")][0].startswith("join (from the fork)")
    assert all(edges[pair] == ["join waits for it"] for pair in joins)  # no token on them


def test_call_edges_are_labelled_with_the_scope_each_call_used(
        demo_result: DemoResult, document: str) -> None:
    svg = graph_xml(document)
    edges = {(g.get("data-source"), g.get("data-target")): edge_label(g)
             for g in svg_groups(svg, "call")}
    used: dict[tuple[str | None, str], set[str]] = {}
    granted: dict[str | None, str | None] = {}  # branches run at once: by agent
    for e in demo_result.run.events:
        if isinstance(e.detail, Exchanged) and not e.detail.for_.startswith("hand-off"):
            granted[e.agent] = e.detail.granted
        elif isinstance(e.detail, Called):
            used.setdefault((e.agent, e.detail.service), set()).add(short(granted[e.agent]))
    assert len(used) == 8
    assert {pair: set(label) for pair, label in edges.items()} == used


def test_a_successful_run_draws_no_denied_edge(document: str) -> None:
    svg = graph_xml(document)
    assert svg_groups(svg, "denied") == []
    assert len(svg_groups(svg, "edge")) == 4 + 2 + 8  # hand-offs, join waits, calls


def test_timeline_lists_every_event_with_its_offset(demo_result: DemoResult,
                                                    tree: Element) -> None:
    rows = tree.by_id("timeline").rows()
    run = demo_result.run
    assert len(rows) == len(run.events)
    for row, e in zip(rows, run.events, strict=True):
        offset = int((e.time - run.created_at).total_seconds() * 1000)
        assert row[0] == f"+{offset}" and row[2] == e.kind
    exchanged = [row for row in rows if row[2] == "exchanged"]
    assert all("requested" in row[3] and "granted" in row[3] for row in exchanged)
    assert all("→ 20" in row[3] for row in rows if row[2] == "called")


def test_tokens_are_decoded_claims_without_signatures(demo_result: DemoResult,
                                                      tree: Element) -> None:
    section = tree.by_id("tokens-section")
    cards = section.find_all("div", cls="token")
    events = demo_result.run.events
    expected = [next(e.detail.claims for e in events if isinstance(e.detail, RootGranted))]
    expected += [e.detail.claims for e in events if isinstance(e.detail, Exchanged)]
    assert len(cards) == len(expected) == 13
    for card, claims in zip(cards, expected, strict=True):
        assert DECODED in card.text()
        shown = json.loads(card.find_all("pre")[0].text())
        chain = shown.pop("delegation_chain", None)  # its signatures shortened (issue 16)
        assert shown == {k: v for k, v in claims.items() if k != "delegation_chain"}
        if chain is not None:
            assert [{k: v for k, v in r.items() if not k.endswith("signature")}
                    for r in chain] == [{k: v for k, v in r.items()
                                         if not k.endswith("signature")}
                                        for r in claims["delegation_chain"]]
            assert all(r[k].endswith("(detached JWS)") and r[k][1:13] in claims_sig
                       for r, original in zip(chain, claims["delegation_chain"], strict=True)
                       for k in ("delegator_signature", "as_signature")
                       if (claims_sig := original[k]))
        assert f"lifetime {claims['exp'] - claims['iat']} s" in card.text()
    last = cards[-1].text()
    assert "agent:cleanup ← agent:infrabot ← user:sam" in last  # the join: from the fork


def test_audit_table_has_one_row_per_record(demo_result: DemoResult, tree: Element) -> None:
    table = tree.by_id("audit-table")
    assert table.header() == list(AUDIT_COLUMNS)
    rows = table.rows()
    assert len(rows) == len(demo_result.audit) > 0
    for row, r in zip(rows, demo_result.audit, strict=True):
        assert row[1:] == [r.action, r.performed_by or "-", r.on_behalf_of or "-", r.resource,
                           r.service, r.decision, r.reason]
    assert any(row[2] == "agent:cleanup" and row[3] == "user:sam" for row in rows)


def test_attack_round_lists_every_attempt_and_its_refusal(demo_result: DemoResult,
                                                          tree: Element) -> None:
    rows = tree.by_id("attacks").rows()
    assert [row[0] for row in rows] == [a.name for a in demo_result.attacks]
    assert all(row[4] == "refused" for row in rows)
    assert all(f"{a.status} {a.code} ({a.reason})" == row[3]
               for row, a in zip(rows, demo_result.attacks, strict=True))


def test_without_the_baseline_there_is_no_baseline_section(tree: Element) -> None:
    assert not [e for e in tree.iter() if e.attrs.get("id") == "baseline-section"]
