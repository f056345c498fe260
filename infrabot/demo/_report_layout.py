"""Where the delegation graph's nodes stand: laid out by the run's graph of hand-offs.

Columns by depth: the user, then each agent one column after the furthest agent that handed off
to it (a join after its branches). Rows: an agent on the row of the agent that handed off to
it; a join on the fork's row, the branches it waits for on rows of their own below it (other
ways on around it). So the join's token edge from the fork runs straight above the branches,
never through one. The services stand on a row below, each under the agents that called it; the workflow's
agents the run did not reach (a way its condition did not take) stand apart, on a row of their
own below the services, in their depth columns, with no edge to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from infrabot.demo._report_edges import Edge
from orchestrator.runs import Run
from orchestrator.workflows import Workflow, branch_agents, fork_of

SERVICES = ("datadog", "github", "aws", "pagerduty")
NODE_W, NODE_H = 150.0, 46.0
CHAR_W, LINE_H = 7.3, 15.0  # 12px monospace
MARGIN, MIN_PITCH, MIN_ROW = 24.0, 300.0, 190.0
SERVICE_GAP, APART_GAP = 230.0, 130.0  # the services' row below the agents; theirs below that

Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # "user", "agent" or "service"
    x: float
    y: float
    active: bool
    note: str = ""  # the tooltip: why an agent was not reached

    @property
    def box(self) -> Box:
        return (self.x - NODE_W / 2, self.y - NODE_H / 2, self.x + NODE_W / 2, self.y + NODE_H / 2)

    @property
    def shown(self) -> str:
        return self.id if len(self.id) <= 19 else self.id[:18] + "…"

    @property
    def caption(self) -> str:
        return self.kind + ("" if self.active else " · not reached")

    @property
    def title(self) -> str:
        return f"{self.id}: {self.note}" if self.note else self.id


@dataclass(frozen=True)
class Layout:
    nodes: list[Node]
    apart: tuple[float, float] | None  # where the caption of the agents not reached goes


def label_size(lines: list[str]) -> tuple[float, float]:
    return max((len(s) for s in lines), default=0) * CHAR_W + 14, len(lines) * LINE_H + 8


def _is_agent(name: str, workflow: Workflow | None) -> bool:
    return name.startswith("agent:") or (workflow is not None and
                                         name in {p.agent for p in workflow.agents})


def _depths(user: str, agents: list[str], flow: list[Edge]) -> dict[str, int]:
    """The user 0, each agent one more than the furthest agent that handed off to it."""
    depth = {user: 0}
    for _ in range(len(agents) + 1):  # a longest path settles in as many rounds as nodes
        changed = False
        for e in flow:
            if e.source in depth and e.target != user and \
                    depth.get(e.target, -1) < depth[e.source] + 1 <= len(agents):
                depth[e.target] = depth[e.source] + 1
                changed = True
        if not changed:
            break
    return {a: depth.get(a, 1) for a in [user, *agents]}


def _rows(user: str, order: list[str], flow: list[Edge], depth: dict[str, int]
          ) -> dict[str, float]:
    """Each node's row: its parent's; a join the row of the agent that forked (so the token
    edge from the fork to the join runs straight, above the branches), the branches of a
    fan-out that a join waits for on the rows below it, other ways on around it."""
    parents: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for e in flow:
        if e.target != user and e.source not in parents.get(e.target, []):
            parents.setdefault(e.target, []).append(e.source)
            children.setdefault(e.source, []).append(e.target)
    row = {user: 0.0}
    for name in order:
        placed = [p for p in parents.get(name, []) if p in row]
        if len(placed) > 1:
            row[name] = row[min(placed, key=lambda p: depth[p])]
        elif placed:
            parent = placed[0]
            ways = [c for c in children[parent] if len(parents.get(c, [])) == 1]
            joined = any(len(parents.get(c, [])) > 1 for c in children[parent])
            first = 1.0 if joined and len(ways) > 1 else -(len(ways) - 1) / 2
            row[name] = row[parent] + first + ways.index(name)
        else:
            row[name] = max(row.values()) + 1.0
    return row


def _apart(rows: dict[str, float], columns: dict[str, int]) -> dict[str, float]:
    """Nodes of one column at least one row apart, in the order their rows put them."""
    out = dict(rows)
    for column in set(columns.values()):
        last = -math.inf
        for name in sorted((n for n in rows if columns[n] == column), key=lambda n: rows[n]):
            out[name] = max(rows[name], last + 1.0)
            last = out[name]
    return out


def _workflow_depth(workflow: Workflow, agent: str, seen: frozenset[str] = frozenset()) -> int:
    """An agent's depth in the workflow's graph (the first agent 1; a join after its
    branches), for an agent the run did not reach."""
    if agent == workflow.root_agent or agent in seen:
        return 1
    seen = seen | {agent}
    fork = fork_of(workflow, agent)
    if fork is not None:
        return 1 + max(_workflow_depth(workflow, a, seen)
                       for head in fork[1].to for a in branch_agents(workflow, head))
    parents = [p.agent for p in workflow.agents for e in p.edges if agent in e.to]
    return 1 + max((_workflow_depth(workflow, p, seen) for p in parents), default=0)


def _why_not(workflow: Workflow, agent: str) -> str:
    ways = [(p.agent, e.when) for p in workflow.agents for e in p.edges if agent in e.to]
    taken = "; ".join(f"{source} hands off to it when {when}" if when else
                      f"{source} hands off to it" for source, when in ways)
    return "not reached in this run" + (f" ({taken})" if taken else "")


def _spread(wanted: Iterable[tuple[float, str]], gap: float) -> list[tuple[float, str]]:
    """Positions left to right as wanted, each at least ``gap`` after the one before."""
    x, out = -math.inf, []
    for desired, name in sorted(wanted):
        x = max(desired, x + gap)
        out.append((x, name))
    return out


def layout(run: Run, edges: list[Edge], workflow: Workflow | None = None) -> Layout:
    """Every node's position (see the module)."""
    ends = list(dict.fromkeys(n for e in edges for n in (e.source, e.target)))
    agents = [n for n in ends if n != run.user and _is_agent(n, workflow)]
    flow = [e for e in edges if e.kind == "handoff" or (e.kind == "denied" and (
        e.source == run.user or e.target in agents))]
    depth = _depths(run.user, agents, flow)
    order = sorted(agents, key=lambda a: (depth[a], agents.index(a)))
    row = _apart(_rows(run.user, order, flow, depth), depth)
    handoffs = [(e.source == run.user, *label_size(e.label)) for e in flow
                if e.kind == "handoff"]
    pitch = max(MIN_PITCH, NODE_W + max((w for _, w, _ in handoffs), default=0) + 40)
    # a label between two rows (not the root grant's: nothing stands above the user's row)
    row_pitch = max(MIN_ROW, NODE_H + 2 * max((h for root, _, h in handoffs if not root),
                                              default=0) + 40)
    top = min(row.values())
    nodes = [Node(n, "user" if n == run.user else "agent", MARGIN + NODE_W / 2 + depth[n] * pitch,
                  MARGIN + NODE_H / 2 + (row[n] - top) * row_pitch, True)
             for n in [run.user, *order]]
    xs = {n.id: n.x for n in nodes}
    below = max(n.y for n in nodes) + SERVICE_GAP
    services = list(dict.fromkeys([*SERVICES, *(n for n in ends if n not in xs)]))
    left, right = min(xs.values()), max(xs.values())
    step = (right - left) / max(len(services) - 1, 1)
    wanted = []  # under its callers, or spread along the agents
    for i, name in enumerate(services):
        callers = [xs[e.source] for e in edges if e.target == name and e.source in xs]
        wanted.append((sum(callers) / len(callers) if callers else left + i * step, name))
    nodes += [Node(name, "service", x, below, name in ends)
              for x, name in _spread(wanted, NODE_W + 30)]
    missing = [p.agent for p in workflow.agents if p.agent not in xs] if workflow else []
    if workflow is None or not missing:
        return Layout(nodes, None)
    y = below + NODE_H + APART_GAP
    spots = _spread([(MARGIN + NODE_W / 2 + _workflow_depth(workflow, a) * pitch, a)
                     for a in missing], NODE_W + 30)
    nodes += [Node(name, "agent", x, y, False, _why_not(workflow, name)) for x, name in spots]
    return Layout(nodes, (spots[0][0] - NODE_W / 2, y - NODE_H / 2 - 10))
