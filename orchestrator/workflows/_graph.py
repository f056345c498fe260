"""A workflow as a graph: who reaches whom and what each hand-off carries (docs/graphs.md); the
checks made before anything runs are in :mod:`orchestrator.workflows._graph_checks`.

Each agent but the first is reached one way: a hand-off naming it (``to``), or, for a join, the
fan-out whose branches it waits for. A branch is a sub-chain: its first agent (the *head*, a
``to`` of the fan-out) may hand off on, one agent at a time, and the branch ends where its last
agent hands off to no one. The join waits for every branch's end; its delegation continues from
the fork point. Pure functions over a loaded :class:`Workflow`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orchestrator.workflows._model import HandOff, Workflow

ScopeOf = Callable[[str], str | None]


@dataclass(frozen=True)
class Way:
    """How an agent is reached: from ``parent``, by its ``edge``-th hand-off; ``join``: as
    the join of that fan-out (the parent is then the fork point)."""

    parent: str
    edge: int
    join: bool = False


def ways_in(workflow: Workflow) -> dict[str, list[Way]]:
    found: dict[str, list[Way]] = {plan.agent: [] for plan in workflow.agents}
    for plan in workflow.agents:
        for e, edge in enumerate(plan.edges):
            for target in edge.to:
                found.setdefault(target, []).append(Way(plan.agent, e))
            if edge.join is not None:
                found.setdefault(edge.join, []).append(Way(plan.agent, e, join=True))
    return found


@dataclass(frozen=True)
class Branch:
    """Where an agent runs in a fan-out: the ``fork`` point, its ``fan_out`` and the ``head``
    of the branch (the agent the fork handed off to) whose sub-chain the agent is in."""

    fork: str
    fan_out: HandOff
    head: str


def fork_of(workflow: Workflow, join: str) -> tuple[str, HandOff] | None:
    """The fork point and the fan-out a join waits for, or None if ``join`` is none."""
    for plan in workflow.agents:
        for edge in plan.edges:
            if edge.join == join:
                return plan.agent, edge
    return None


def branch_of(workflow: Workflow, agent: str) -> Branch | None:
    """The branch ``agent`` runs in (its head, or an agent after the head), or None: an agent
    before a fork, or a join and after."""
    ways, seen = ways_in(workflow), {agent}
    into = ways.get(agent, [])
    while into and not into[0].join:
        way = into[0]
        edge = workflow.plan(way.parent).edges[way.edge]
        if edge.fan_out:
            return Branch(way.parent, edge, agent)
        if way.parent in seen:  # a cycle (refused by check_graph)
            return None
        seen.add(agent := way.parent)
        into = ways.get(agent, [])
    return None


def branch_agents(workflow: Workflow, head: str, stop: frozenset[str] = frozenset()
                  ) -> list[str]:
    """The agents that may run in ``head``'s branch: the head and every agent its hand-offs
    (each way, whichever condition holds) reach, in order; none of ``stop`` nor after it."""
    names = {plan.agent for plan in workflow.agents}
    out = [head]
    for agent in out:
        if agent not in names:
            continue
        for edge in workflow.plan(agent).edges:
            out += [t for t in edge.to if t not in out and t not in stop]
    return out


def branch_ends(workflow: Workflow, head: str) -> list[str]:
    """The agents that may end ``head``'s branch: those with no way on that always holds."""
    return [a for a in branch_agents(workflow, head)
            if all(e.when is not None for e in workflow.plan(a).edges)]


def graph_order(workflow: Workflow) -> list[str]:
    """The agents from the first, each after the agent that hands off to it (a join after every
    agent of its fork's branches)."""
    order = [workflow.root_agent]
    for agent in order:
        if agent not in {p.agent for p in workflow.agents}:
            continue
        for edge in workflow.plan(agent).edges:
            after = [a for head in edge.to for a in branch_agents(workflow, head)
                     if edge.join is not None and a != edge.join]
            for target in (*edge.to, *after, *((edge.join,) if edge.join else ())):
                if target not in order:
                    order.append(target)
    return order


def longest_way(workflow: Workflow) -> int:
    """How many agents act on the longest way through the workflow (the deepest chain)."""
    depth = {workflow.root_agent: 1}
    for agent in graph_order(workflow):
        for edge in workflow.plan(agent).edges:
            for target in (*edge.to, *((edge.join,) if edge.join else ())):
                depth[target] = depth[agent] + 1
    return max(depth.values())


def subtree_scopes(workflow: Workflow, agent: str, scope_of: ScopeOf) -> list[str]:
    """What ``agent`` and every agent after it needs: a branch, the steps of its sub-chain; an
    agent that forks, its own and every branch's and its join's and after, since it hands them
    all on (a branch and the join each get a hand-off of their own from it)."""
    out: list[str] = []
    for name in _subtree(workflow, agent, set()):
        for step in workflow.plan(name).steps:
            scope = scope_of(step.action)
            if scope is not None and scope not in out:
                out.append(scope)
    return out


def _subtree(workflow: Workflow, agent: str, seen: set[str]) -> Iterator[str]:
    if agent in seen or agent not in {p.agent for p in workflow.agents}:
        return
    seen.add(agent)
    yield agent
    for edge in workflow.plan(agent).edges:
        for target in (*edge.to, *((edge.join,) if edge.join else ())):
            yield from _subtree(workflow, target, seen)


def earlier_steps(workflow: Workflow, agent: str) -> set[str]:
    """The ids of the steps that have run when ``agent`` starts."""
    way = ways_in(workflow)[agent]
    if not way:
        return set()
    parent = way[0].parent
    done = earlier_steps(workflow, parent) | _ids(workflow, parent)
    if way[0].join:
        for branch in workflow.plan(parent).edges[way[0].edge].to:
            for inside in branch_agents(workflow, branch):
                done |= _ids(workflow, inside)
    return done


def _ids(workflow: Workflow, agent: str) -> set[str]:
    return {s.id for s in workflow.plan(agent).steps if s.id is not None}
