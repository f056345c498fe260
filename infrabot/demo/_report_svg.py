"""The delegation graph of a run as inline SVG: laid out here in Python (no JavaScript library),
drawn by the template ``templates/graph.svg``.

Where the nodes stand is :mod:`infrabot.demo._report_layout`: columns by depth, a fan-out's
branches on rows of their own, the services on a row below, the workflow's agents the run did not
reach apart below them. Hand-off edges (the root grant, every hand-off, named for its way:
fan-out, branch taken, join from the fork) are labelled with the scopes handed off, each branch's
last agent has an edge to its join ("join waits for it", no token); call edges with the scopes
used, denied edges (``root_denied``, ``exchange_denied``, ``call_denied``) are red, dashed and
labelled with the reason. An edge is straight unless that would cross a node it does not join:
then the least bent curve that crosses none. A label stands beside its edge where it covers no
node, no other label and no edge. Nodes are ``<g class="node">``, edges ``<g class="edge">``
(plus ``denied``), inside ``<svg id="delegation-graph">``; every text is escaped and display-safe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from infrabot.demo._report_edges import Edge, graph_edges
from infrabot.demo._report_layout import (
    LINE_H,
    MARGIN,
    NODE_H,
    NODE_W,
    Box,
    Node,
    label_size,
    layout,
)
from orchestrator.runs import Run
from orchestrator.workflows import Workflow

BENDS = (0.0, 40.0, -40.0, 80.0, -80.0, 120.0, -120.0, 170.0, -170.0, 230.0, -230.0, 300.0,
         -300.0)
SAMPLES = 120


def _clip(node: Node, toward: tuple[float, float], gap: float) -> tuple[float, float]:
    dx, dy = toward[0] - node.x, toward[1] - node.y
    t = min(NODE_W / 2 / abs(dx) if dx else math.inf, NODE_H / 2 / abs(dy) if dy else math.inf)
    length = math.hypot(dx, dy) or 1.0
    t += gap / length
    return node.x + dx * t, node.y + dy * t


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True)
class _Curve:
    """An edge's quadratic Bézier from the source's border to the target's border."""

    p0: tuple[float, float]
    c: tuple[float, float]
    p2: tuple[float, float]

    @classmethod
    def between(cls, a: Node, b: Node, bend: float) -> _Curve:
        length = math.hypot(b.x - a.x, b.y - a.y) or 1.0
        c = ((a.x + b.x) / 2 - (b.y - a.y) / length * bend,
             (a.y + b.y) / 2 + (b.x - a.x) / length * bend)
        return cls(_clip(a, c, 0.0), c, _clip(b, c, 3.0))

    def at(self, t: float) -> tuple[float, float]:
        u = 1 - t
        return (u * u * self.p0[0] + 2 * u * t * self.c[0] + t * t * self.p2[0],
                u * u * self.p0[1] + 2 * u * t * self.c[1] + t * t * self.p2[1])

    @cached_property
    def points(self) -> list[tuple[float, float]]:
        return [self.at(i / SAMPLES) for i in range(SAMPLES + 1)]

    @cached_property
    def bounds(self) -> Box:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        return (min(xs), min(ys), max(xs), max(ys))

    def crosses(self, box: Box) -> bool:
        b = self.bounds
        if b[2] < box[0] or box[2] < b[0] or b[3] < box[1] or box[3] < b[1]:
            return False
        return any(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in self.points)


def _curve(a: Node, b: Node, others: list[Box], used: list[float]) -> tuple[_Curve, float]:
    """The least bent curve from ``a`` to ``b`` that crosses no node in ``others``, and is not
    one already drawn between them (``used`` bends); failing that, the least bent."""
    bends = [bend for bend in BENDS if all(abs(bend - u) >= 40 for u in used)]
    for bend in bends:
        curve = _Curve.between(a, b, bend)
        if not any(curve.crosses(_grown(box, 6.0)) for box in others):
            return curve, bend
    return _Curve.between(a, b, bends[0]), bends[0]


def _spots(edge: Edge, curve: _Curve) -> Iterator[Box]:
    """Where a label may go, nearest its edge's middle first: above a straight level hand-off,
    then beside, above, below and at the corners of points along the curve, further and
    further away; last, on the middle itself."""
    w, h = label_size(edge.label)
    mx, my = curve.at(0.5)
    if edge.kind == "handoff" and curve.p0[1] == curve.p2[1] == curve.c[1]:
        yield (mx - w / 2, my - 8 - h, mx + w / 2, my - 8)
    ts = sorted((i / 20 for i in range(3, 18)), key=lambda t: abs(t - 0.5))
    for gap in (6.0, 16.0, 30.0, 48.0, 72.0, 100.0, 140.0):
        for t in ts:
            x, y = curve.at(t)
            for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)):
                cx, cy = x + dx * (w / 2 + gap), y + dy * (h / 2 + gap)
                yield (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    yield (mx - w / 2, my - h / 2, mx + w / 2, my + h / 2)


def _label_box(edge: Edge, curve: _Curve, taken: list[Box], others: list[_Curve]) -> Box:
    """The first spot (:func:`_spots`) that covers no node, no other label and no edge, its
    own included (a label never hides an edge); failing that, the first that covers no node
    or label; failing that, the edge's middle."""
    free = None
    last: Box | None = None
    for box in _spots(edge, curve):
        last = box
        if any(_overlaps(box, t) for t in taken):
            continue
        if not any(c.crosses(_grown(box, 3.0)) for c in (curve, *others)):
            return box
        free = free or box
    assert last is not None
    return free or last


def _grown(box: Box, by: float) -> Box:
    return (box[0] - by, box[1] - by, box[2] + by, box[3] + by)


@dataclass(frozen=True)
class DrawnEdge:
    """An edge as drawn: its curve and the box of its label."""

    edge: Edge
    curve: _Curve
    box: Box

    @property
    def title(self) -> str:
        return f"{self.edge.source} → {self.edge.target}: " + "; ".join(self.edge.notes)

    @property
    def lines(self) -> list[tuple[float, float, bool, str]]:
        """Each label line: x, y, whether it is the head line, the text."""
        return [(self.box[0] + 7, self.box[1] + 1 + LINE_H * (i + 1), i == 0 and bool(
            self.edge.head), line) for i, line in enumerate(self.edge.label)]


@dataclass(frozen=True)
class Drawing:
    """What ``templates/graph.svg`` draws for one run: its ``viewBox`` is ``left top width
    height``; ``apart`` is where the caption of the agents not reached goes (None: none)."""

    nodes: list[Node]
    edges: list[DrawnEdge]
    left: float
    top: float
    width: float
    height: float
    description: str
    apart: tuple[float, float] | None = None


def delegation_graph(run: Run, workflow: Workflow | None = None) -> Drawing:
    """The laid-out delegation graph of one run (of ``workflow``, when it is known: its first
    agent is whom a refused root grant was for, its agents not reached are shown apart)."""
    edges = graph_edges(run, workflow.root_agent if workflow is not None else None)
    placed = layout(run, edges, workflow)
    nodes = placed.nodes
    by_id = {n.id: n for n in nodes}
    edges.sort(key=lambda e: ("call", "handoff", "denied").index(e.kind))
    used: dict[frozenset[str], list[float]] = {}
    curves = []
    for edge in edges:
        a, b = by_id[edge.source], by_id[edge.target]
        bends = used.setdefault(frozenset((a.id, b.id)), [])
        curve, bend = _curve(a, b, [n.box for n in nodes if n.id not in (a.id, b.id)], bends)
        bends.append(bend)
        curves.append(curve)
    taken: list[Box] = [n.box for n in nodes]
    boxes: dict[int, Box] = {}
    for i in sorted(range(len(edges)), key=lambda i: edges[i].kind == "call"):  # hand-offs first
        boxes[i] = _label_box(edges[i], curves[i], taken, curves[:i] + curves[i + 1:])
        taken.append(boxes[i])
    drawn = [DrawnEdge(edge, curve, boxes[i])
             for i, (edge, curve) in enumerate(zip(edges, curves, strict=True))]
    xs = [x for box in taken + [c.bounds for c in curves] for x in (box[0], box[2])]
    ys = [y for box in taken + [c.bounds for c in curves] for y in (box[1], box[3])]
    if placed.apart is not None:
        ys.append(placed.apart[1] - 14)
    left, top = min(xs) - MARGIN, min(ys) - MARGIN
    desc = (f"Delegation graph of {run.run_id}: {len(nodes)} nodes, {len(edges)} edges, "
            f"{sum(e.kind == 'denied' for e in edges)} denied")
    return Drawing(nodes, drawn, left, top, max(xs) + MARGIN - left, max(ys) + MARGIN - top,
                   desc, placed.apart)
