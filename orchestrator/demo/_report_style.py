"""The report's inline stylesheet and scripts: no fonts, images or code from anywhere else.

``ERROR_BEACON`` runs first, in ``<head>``: it counts uncaught errors, failed resource loads,
rejected promises and ``console.error`` calls into ``<html data-js-errors>``, so a headless
browser's dumped DOM says whether the page ran cleanly. ``INTERACTIONS`` runs last: hovering a
node or an edge of the graph highlights the timeline rows it stands for; it then sets
``<html data-report-ready="yes">``.
"""

from __future__ import annotations

CSS = """
:root { --ink: #0f172a; --muted: #64748b; --line: #e2e8f0; --bg: #f8fafc; --allow: #15803d;
        --deny: #dc2626; --handoff: #2563eb; --call: #475569; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 0 0 6px; }
p.lead { color: var(--muted); margin: 0 0 16px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
                   font-size: 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 4px 18px;
           margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
           padding: 12px 16px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.status { font-weight: 600; padding: 1px 8px; border-radius: 10px; background: #e2e8f0; }
.status.succeeded, .allow { color: var(--allow); }
.status.denied, .status.failed, .status.expired, .deny { color: var(--deny); }
.status.succeeded { background: #dcfce7; }
.status.denied, .status.failed { background: #fee2e2; }
.counters { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0 0; padding: 0; }
.counters li { list-style: none; background: #fff; border: 1px solid var(--line);
               border-radius: 8px; padding: 6px 12px; }
.counters b { font-size: 16px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
         padding: 8px; overflow-x: auto; }
figcaption { color: var(--muted); font-size: 12px; padding: 4px 8px; }
svg#delegation-graph { display: block; width: 100%; height: auto; min-width: 880px; }
svg .node rect { stroke-width: 1.5; }
svg .node.user rect { fill: #f1f5f9; stroke: #334155; }
svg .node.agent rect { fill: #eff6ff; stroke: var(--handoff); }
svg .node.service rect { fill: #f0fdf4; stroke: var(--allow); }
svg .node.idle rect { fill: #fff; stroke: #cbd5e1; stroke-dasharray: 3 3; }
svg .node text { font: 600 13px ui-monospace, Menlo, Consolas, monospace; fill: var(--ink); }
svg .node text.kind { font-weight: 400; font-size: 10px; fill: var(--muted); }
svg .edge path { fill: none; stroke-width: 2; }
svg .edge.handoff path { stroke: var(--handoff); }
svg .edge.call path { stroke: var(--call); }
svg .edge.denied path { stroke: var(--deny); stroke-dasharray: 7 5; }
svg .edge .label rect { fill: #fff; fill-opacity: 0.94; stroke: var(--line); }
svg .edge text { font: 12px ui-monospace, Menlo, Consolas, monospace; fill: var(--ink); }
svg .edge text .head { font-weight: 700; fill: var(--muted); }
svg .edge.denied text, svg .edge.denied text .head { fill: var(--deny); }
svg .hl path { stroke-width: 4; }
svg .hl rect { stroke-width: 3; }
.legend { display: flex; gap: 18px; font-size: 12px; color: var(--muted); padding: 4px 8px; }
.legend span::before { content: ""; display: inline-block; width: 26px; height: 0;
                       vertical-align: middle; margin-right: 6px; border-top: 2px solid; }
.legend .l-handoff::before { border-color: var(--handoff); }
.legend .l-call::before { border-color: var(--call); }
.legend .l-denied::before { border-top: 2px dashed var(--deny); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #f1f5f9; font-weight: 600; font-size: 12px; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; }
tr.denied td { background: #fef2f2; }
tr.hl td { background: #fef9c3; }
.track { position: relative; width: 180px; height: 10px; margin-top: 4px;
         background: #f1f5f9; border-radius: 5px; }
.bar { position: absolute; top: 0; height: 10px; min-width: 3px; border-radius: 5px;
       background: var(--handoff); }
.bar.called { background: var(--allow); }
.bar.denied { background: var(--deny); }
.bar.point { background: var(--muted); }
.tokens { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr));
          gap: 12px; }
.token { min-width: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
         padding: 10px 12px; }
.token .meta { color: var(--muted); font-size: 12px; margin: 0 0 6px; }
.badge { display: inline-block; font-size: 11px; font-weight: 600; color: #92400e;
         background: #fef3c7; border-radius: 4px; padding: 0 6px; margin-left: 6px; }
pre { margin: 0; padding: 8px; background: #f8fafc; border: 1px solid var(--line);
      border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
p.note { background: #fffbeb; border: 1px solid #fde68a; border-radius: 8px; padding: 8px 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
"""

ERROR_BEACON = """
(function () {
  var root = document.documentElement;
  root.setAttribute("data-js-errors", "0");
  function bump() {
    root.setAttribute("data-js-errors", String(Number(root.getAttribute("data-js-errors")) + 1));
  }
  window.addEventListener("error", bump, true);
  window.addEventListener("unhandledrejection", bump);
  var original = console.error;
  console.error = function () { bump(); return original.apply(console, arguments); };
})();
"""

INTERACTIONS = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#timeline tbody tr"));
  function related(source, target) {
    return rows.filter(function (row) {
      var agent = row.getAttribute("data-agent"), peer = row.getAttribute("data-peer");
      if (target === null) { return agent === source || peer === source; }
      return agent === source && peer === target;
    });
  }
  function hover(element, matches) {
    element.addEventListener("mouseenter", function () {
      element.classList.add("hl");
      matches.forEach(function (row) { row.classList.add("hl"); });
    });
    element.addEventListener("mouseleave", function () {
      element.classList.remove("hl");
      matches.forEach(function (row) { row.classList.remove("hl"); });
    });
  }
  document.querySelectorAll("#delegation-graph .edge").forEach(function (edge) {
    hover(edge, related(edge.getAttribute("data-source"), edge.getAttribute("data-target")));
  });
  document.querySelectorAll("#delegation-graph .node").forEach(function (node) {
    hover(node, related(node.getAttribute("data-id"), null));
  });
  document.documentElement.setAttribute("data-report-ready", "yes");
})();
"""
