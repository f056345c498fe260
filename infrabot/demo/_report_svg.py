"""The delegation graph of a run as inline SVG: laid out here in Python (no JavaScript library),
drawn by the template ``templates/graph.svg``.

Top row: the user, then the agents (a branch not taken: not reached); bottom row: the services,
under the agents that called them. Hand-off edges (the root grant, every hand-off, named for its
way: fan-out, branch taken, join from the fork) are labelled with the scopes handed off, each
branch's last agent has an edge to its join ("join waits for it", no token); an agent a branch
handed off to stands beside the agent that handed off to it; call edges with the scopes
used, denied edges (``root_denied``, ``exchange_denied``, ``call_denied``) are red, dashed and
labelled with the reason. Nodes are ``<g class="node">``, edges ``<g class="edge">`` (plus
``denied``), inside ``<svg id="delegation-graph">``; every text is escaped and display-safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infrabot.demo._report_edges import AGENTS, Edge, graph_edges
from orchestrator.runs import Run

SERVICES = ("datadog", "github", "aws", "pagerduty")
NODE_W, NODE_H = 150.0, 46.0
CHAR_W, LINE_H = 7.3, 15.0  # 12px monospace
MARGIN, ROW_GAP, MIN_PITCH = 24.0, 230.0, 300.0

Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # "user", "agent" or "service"
    x: float
    y: float
    active: bool

    @property
    def box(self) -> Box:
        return (self.x - NODE_W / 2, self.y - NODE_H / 2, self.x + NODE_W / 2, self.y + NODE_H / 2)

    @property
    def shown(self) -> str:
        return self.id if len(self.id) <= 19 else self.id[:18] + "…"

    @property
    def caption(self) -> str:
        return self.kind + ("" if self.active else " · not reached")


def _label_size(lines: list[str]) -> tuple[float, float]:
    return max((len(s) for s in lines), default=0) * CHAR_W + 14, len(lines) * LINE_H + 8


def layout(run: Run, edges: list[Edge]) -> tuple[list[Node], float, float]:
    """Node positions and the drawing's width and height."""
    ends = {e.source for e in edges} | {e.target for e in edges}
    extra = sorted(n for n in ends if n.startswith("agent:") and n not in AGENTS)
    agents = [*AGENTS, *extra]
    for name in extra:  # beside the agent that handed off
        parent = next((e.source for e in edges if e.target == name and e.kind == "handoff"
                       and e.source in agents and e.source != name), None)
        if parent is not None:
            agents.remove(name)
            agents.insert(agents.index(parent) + 1, name)
    services = list(SERVICES) + sorted(n for n in ends - set(agents) - {run.user}
                                       if n not in SERVICES)
    widest = max((_label_size(e.label)[0] for e in edges if e.target in agents), default=0)
    tallest = max((_label_size(e.label)[1] for e in edges if e.target in agents), default=0)
    pitch = max(MIN_PITCH, NODE_W + widest + 40)
    top = MARGIN + tallest + 16 + NODE_H / 2
    nodes = [Node(name, "user" if i == 0 else "agent", MARGIN + NODE_W / 2 + i * pitch, top,
                  name in ends) for i, name in enumerate([run.user, *agents])]
    xs = {n.id: n.x for n in nodes}
    first, step = xs[agents[0]], (xs[agents[-1]] - xs[agents[0]]) / max(len(services) - 1, 1)
    wanted = []
    for i, name in enumerate(services):  # under its callers, or spread along the agents' row
        callers = [xs[e.source] for e in edges if e.target == name and e.source in xs]
        wanted.append((sum(callers) / len(callers) if callers else first + i * step, i, name))
    x = -math.inf
    for desired, _, name in sorted(wanted):
        x = max(desired, x + NODE_W + 30)
        nodes.append(Node(name, "service", x, top + ROW_GAP, name in ends))
    width = max(n.x for n in nodes) + NODE_W / 2 + MARGIN
    return nodes, width, top + ROW_GAP + NODE_H / 2 + MARGIN


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

    def crosses(self, box: Box) -> bool:
        return any(box[0] <= x <= box[2] and box[1] <= y <= box[3]
                   for x, y in map(self.at, (i / 200 for i in range(201))))


def _label_box(edge: Edge, curve: _Curve, a: Node, b: Node, taken: list[Box],
               others: list[_Curve]) -> Box:
    """Above a straight hand-off on the top row; elsewhere the first spot beside the curve that
    covers no node, no other label and no edge, its own included (a label never hides an
    edge); failing that, one that covers no node or label."""
    w, h = _label_size(edge.label)
    if a.y == b.y and curve.c == ((a.x + b.x) / 2, a.y):
        mx, my = curve.c
        return (mx - w / 2, my - 8 - h, mx + w / 2, my - 8)
    points = list(map(curve.at, (0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8)))
    offsets = [(sx * (w / 2 + g), 0.0) for g in (8.0, 24.0, 48.0, 80.0, 120.0) for sx in (-1, 1)]
    offsets += [(0.0, -h / 2 - 8), (0.0, h / 2 + 8), (0.0, 0.0)]
    spots = [(x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
             for dx, dy in offsets for x, y in points]
    free = [box for box in spots if not any(_overlaps(box, t) for t in taken)]
    clear = [box for box in free
             if not any(c.crosses(_grown(box, 3.0)) for c in (curve, *others))]
    return (clear or free or spots)[0]


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
    """What ``templates/graph.svg`` draws for one run."""

    nodes: list[Node]
    edges: list[DrawnEdge]
    width: float
    height: float
    description: str


def delegation_graph(run: Run) -> Drawing:
    """The laid-out delegation graph of one run."""
    edges = graph_edges(run)
    nodes, width, height = layout(run, edges)
    by_id = {n.id: n for n in nodes}
    edges.sort(key=lambda e: ("call", "handoff", "denied").index(e.kind))
    seen: dict[frozenset[str], int] = {}
    curves = []
    for edge in edges:
        k = seen[frozenset((edge.source, edge.target))] = \
            seen.get(frozenset((edge.source, edge.target)), -1) + 1
        bend = 0.0 if k == 0 else 70.0 * ((k + 1) // 2) * (1 if k % 2 else -1)
        curves.append(_Curve.between(by_id[edge.source], by_id[edge.target], bend))
    taken: list[Box] = [n.box for n in nodes]
    drawn = []
    for i, (edge, curve) in enumerate(zip(edges, curves, strict=True)):
        box = _label_box(edge, curve, by_id[edge.source], by_id[edge.target], taken,
                         curves[:i] + curves[i + 1:])
        taken.append(box)
        drawn.append(DrawnEdge(edge, curve, box))
    width = max(width, max((box[2] for box in taken), default=0.0) + MARGIN)
    desc = (f"Delegation graph of {run.run_id}: {len(nodes)} nodes, {len(edges)} edges, "
            f"{sum(e.kind == 'denied' for e in edges)} denied")
    return Drawing(nodes, drawn, width, height, desc)
