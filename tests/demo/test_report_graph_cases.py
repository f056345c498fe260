"""The delegation graph's layout and the lead's route on hand-made runs of other shapes: a branch
that hands off further (scan-report), the rollback branch taken (the fan-out's agents not
reached), a run whose workflow is not known, and a run no agent acted in. The geometry is the
Python layout's own (the browser test checks the demo's run as Chromium draws it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infrabot.demo import DemoResult
from infrabot.demo._report_edges import route
from infrabot.demo._report_svg import Drawing, delegation_graph
from orchestrator.runs import Run, RunEvent
from orchestrator.workflows import Workflow, load_directory, load_workflows

from ._html import parse
from .conftest import event, make_result

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
INFRABOT, ARGOCD, SCANNER = "agent:infrabot", "agent:argocd", "agent:scanner"
NOTIFIER, CLEANUP, ROLLBACK = "agent:notifier", "agent:cleanup", "agent:rollback"


def shipped(name: str) -> Workflow:
    return load_workflows(WORKFLOWS, load_directory(WORKFLOWS / "directory.yaml"))[name]


def run_of(workflow: str, events: list[RunEvent]) -> Run:
    return make_result(events).run.model_copy(update={"workflow": workflow})


def call(seq: int, agent: str, service: str) -> RunEvent:
    return event(seq, "called", agent, service=service)


def hand_off(seq: int, agent: str, to: str, scope: str) -> RunEvent:
    return event(seq, "handed_off", agent, to=to, scope=f"urn:infra:{scope}")


def scan_report() -> list[RunEvent]:
    return [event(1, "started", None), event(2, "root_granted", None, may_act=INFRABOT,
                                             granted=["urn:infra:repo:read"]),
            call(3, INFRABOT, "datadog"),
            event(4, "branch_taken", INFRABOT, to=[ARGOCD, SCANNER], join=CLEANUP),
            hand_off(5, INFRABOT, ARGOCD, "deploy:create"),
            hand_off(6, INFRABOT, SCANNER, "repo:read urn:infra:chat:write"),
            hand_off(7, INFRABOT, CLEANUP, "incident:resolve"),
            call(8, ARGOCD, "github"), call(9, SCANNER, "github"),
            hand_off(10, SCANNER, NOTIFIER, "chat:write"), call(11, NOTIFIER, "chat"),
            call(12, CLEANUP, "aws"), call(13, CLEANUP, "pagerduty"),
            event(14, "finished", CLEANUP)]


def rollback_taken() -> list[RunEvent]:
    return [event(1, "started", None), event(2, "root_granted", None, may_act=INFRABOT,
                                             granted=["urn:infra:monitoring:read"]),
            call(3, INFRABOT, "datadog"),
            event(4, "branch_taken", INFRABOT, to=[ROLLBACK], join=None,
                  when="max(steps.latency.series.0.pointlist.*.1) > 500"),
            hand_off(5, INFRABOT, ROLLBACK, "deploy:create"),
            call(6, ROLLBACK, "github"), call(7, ROLLBACK, "aws"),
            event(8, "finished", ROLLBACK)]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_clear(drawing: Drawing) -> None:
    """No two nodes overlap, no label covers a node or another label, no edge runs through a
    node it does not join, and every edge's label is clear of every edge."""
    boxes = {n.id: n.box for n in drawing.nodes}
    names = sorted(boxes)
    assert [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if _overlap(boxes[a], boxes[b])] == []
    labels = [d.box for d in drawing.edges]
    assert [(d.edge.source, d.edge.target, name) for d in drawing.edges
            for name, box in boxes.items() if _overlap(d.box, box)] == []
    assert [(i, j) for i, a in enumerate(labels) for j, b in enumerate(labels[i + 1:], i + 1)
            if _overlap(a, b)] == []
    assert [(d.edge.source, d.edge.target, name) for d in drawing.edges
            for name, box in boxes.items() if name not in (d.edge.source, d.edge.target)
            and d.curve.crosses((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1))] == []
    assert [(d.edge.source, d.edge.target) for d in drawing.edges
            for other in drawing.edges if other.curve.crosses(d.box)] == []


def test_a_branch_that_hands_off_further_stays_on_its_row() -> None:
    run = run_of("scan-report", scan_report())
    drawing = delegation_graph(run, shipped("scan-report"))
    assert_clear(drawing)
    at = {n.id: n for n in drawing.nodes}
    assert at[INFRABOT].x < at[ARGOCD].x == at[SCANNER].x < at[NOTIFIER].x < at[CLEANUP].x
    assert at[NOTIFIER].y == at[SCANNER].y != at[ARGOCD].y
    assert at[CLEANUP].y == at[INFRABOT].y  # the join's token edge runs straight from the fork
    assert all(n.active for n in drawing.nodes if n.kind == "agent")
    assert at["chat"].kind == "service"
    assert route(run) == (f"{INFRABOT} → {ARGOCD} ∥ ({SCANNER} → {NOTIFIER}) ⇒ join "
                          f"{CLEANUP}")


def test_the_branch_taken_runs_on_and_the_fan_out_not_reached_stands_apart() -> None:
    run = run_of("post-deploy", rollback_taken())
    drawing = delegation_graph(run, shipped("post-deploy"))
    assert_clear(drawing)
    at = {n.id: n for n in drawing.nodes}
    assert at[ROLLBACK].y == at[INFRABOT].y and at[ROLLBACK].x > at[INFRABOT].x
    idle = {n.id for n in drawing.nodes if n.kind == "agent" and not n.active}
    assert idle == {ARGOCD, SCANNER, CLEANUP}
    lowest = max(n.box[3] for n in drawing.nodes if n.id not in idle)
    assert all(at[name].box[1] > lowest for name in idle)
    assert drawing.apart is not None and drawing.apart[1] > lowest
    assert at[ARGOCD].title == (f"{ARGOCD}: not reached in this run ({INFRABOT} hands off "
                                "to it)")
    assert not any({d.edge.source, d.edge.target} & idle for d in drawing.edges)
    assert route(run) == f"{INFRABOT} → {ROLLBACK}"


def test_without_the_workflow_only_what_the_run_reached_is_drawn() -> None:
    run = run_of("post-deploy", scan_report())
    drawing = delegation_graph(run)
    assert_clear(drawing)
    assert drawing.apart is None
    assert {n.id for n in drawing.nodes if n.kind == "agent"} == {
        INFRABOT, ARGOCD, SCANNER, NOTIFIER, CLEANUP}
    assert all(n.active for n in drawing.nodes if n.kind == "agent")


def test_the_lead_of_a_run_no_agent_acted_in(write: Callable[[DemoResult], str]) -> None:
    events = [event(1, "started", None),
              event(2, "root_denied", None, needed=["urn:infra:repo:read"])]
    lead = parse(write(make_result(events, status="denied"))).by_id("route").text()
    assert lead == ("A signed CI webhook started the run of post-deploy. No agent acted on "
                    "behalf of user:sam: the run was not granted a root token.")
    assert route(make_result(events).run) == ""


def test_the_lead_of_a_run_names_its_route(write: Callable[[DemoResult], str]) -> None:
    result = make_result(rollback_taken())
    lead = parse(write(result)).by_id("route").text()
    assert lead.startswith("A signed CI webhook started the run of post-deploy. "
                           f"{INFRABOT} → {ROLLBACK} acted on behalf of user:sam: ")
