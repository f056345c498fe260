"""The delegation graph's geometry as a real headless Chromium lays it out (the same harness as
:mod:`tests.demo.test_report_browser`): for the demo's fan-out run, no two nodes overlap, no label
covers a node, no edge runs through a node it does not join (so not through the agent the run
did not reach, which stands apart), and the lead names the run's own agents as they went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infrabot.demo import DemoResult

from ._html import parse
from .test_report_browser import browse, chromium  # noqa: F401  (chromium: the fixture)

Box = tuple[float, float, float, float]  # left, top, right, bottom

GEOMETRY_PROBE = """<script>
window.addEventListener("load", function () {
  function box(rect) {
    var b = rect.getBBox();
    return [b.x, b.y, b.x + b.width, b.y + b.height];
  }
  var nodes = Array.prototype.map.call(document.querySelectorAll("#delegation-graph .node"),
    function (g) {
      return {id: g.getAttribute("data-id"), idle: g.classList.contains("idle"),
              box: box(g.querySelector("rect"))};
    });
  var edges = Array.prototype.map.call(document.querySelectorAll("#delegation-graph .edge"),
    function (g) {
      var path = g.querySelector("path"), length = path.getTotalLength(), points = [];
      for (var i = 0; i <= 200; i++) {
        var p = path.getPointAtLength(length * i / 200);
        points.push([p.x, p.y]);
      }
      return {source: g.getAttribute("data-source"), target: g.getAttribute("data-target"),
              kind: g.getAttribute("class"), label: box(g.querySelector(".label rect")),
              points: points};
    });
  document.documentElement.setAttribute("data-geometry",
    JSON.stringify({nodes: nodes, edges: edges}));
});
</script>"""


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(point: list[float], box: Box, inset: float = 1.0) -> bool:
    return box[0] + inset < point[0] < box[2] - inset and box[1] + inset < point[1] < box[3] - inset


def geometry(browser: str, report: Path, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    page = tmp_path / "geometry.html"
    page.write_text(report.read_text(encoding="utf-8")
                    .replace("</body>", GEOMETRY_PROBE + "</body>"), encoding="utf-8")
    dom, console = browse(browser, page, tmp_path / "profile", "--dump-dom",
                          "--window-size=1400,2400")
    assert console == []
    tree = parse(dom)
    html = tree.find_all("html")[0]
    assert html.attrs["data-js-errors"] == "0"
    return json.loads(html.attrs["data-geometry"]), tree


def test_graph_nodes_labels_and_edges_stay_clear_of_each_other(
        chromium: str, report_file: Path, tmp_path: Path  # noqa: F811
) -> None:
    drawn, _ = geometry(chromium, report_file, tmp_path)
    nodes = {n["id"]: n for n in drawn["nodes"]}
    boxes = {name: tuple(n["box"]) for name, n in nodes.items()}
    names = sorted(boxes)
    overlapping = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                   if _overlap(boxes[a], boxes[b])]
    assert overlapping == []
    covered = [(e["source"], e["target"], name) for e in drawn["edges"]
               for name, box in boxes.items() if _overlap(tuple(e["label"]), box)]
    assert covered == []  # no label hides a node, and no node hides a label
    through = sorted({(e["source"], e["target"], name) for e in drawn["edges"]
                      for name, box in boxes.items() if name not in (e["source"], e["target"])
                      for point in e["points"] if _inside(point, box)})
    assert through == []  # no edge runs through a node it does not join
    handoffs = {(e["source"], e["target"]) for e in drawn["edges"] if "handoff" in e["kind"]}
    assert ("agent:infrabot", "agent:cleanup") in handoffs  # the join's token, from the fork


def test_the_agent_not_reached_stands_apart(
        chromium: str, report_file: Path, tmp_path: Path  # noqa: F811
) -> None:
    drawn, _ = geometry(chromium, report_file, tmp_path)
    idle = [n for n in drawn["nodes"] if n["idle"] and n["id"].startswith("agent:")]
    assert [n["id"] for n in idle] == ["agent:rollback"]
    reached = [n["box"] for n in drawn["nodes"] if not n["idle"]]
    assert idle[0]["box"][1] > max(box[3] for box in reached)  # below all the run reached
    assert not any(idle[0]["id"] in (e["source"], e["target"]) for e in drawn["edges"])


def test_the_lead_names_the_agents_of_the_run(
        chromium: str, report_file: Path, demo_result: DemoResult,  # noqa: F811
        tmp_path: Path) -> None:
    _, tree = geometry(chromium, report_file, tmp_path)
    lead = tree.by_id("route").text()
    route = "agent:infrabot → agent:argocd ∥ agent:scanner ⇒ join agent:cleanup"
    assert route in lead
    assert f"run of {demo_result.run.workflow}." in lead
    assert f"acted on behalf of {demo_result.run.user}" in lead
    assert "CleanupAgent" not in lead and "agent:rollback" not in lead
    assert tree.find_all("title")[0].text() == \
        f"InfraBot Chains · {demo_result.run.workflow} · {demo_result.run.run_id}"
