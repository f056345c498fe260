"""The checks made of a workflow's graph before anything runs (``workflows check``, the loader and
the preflight): unknown agents, fan-outs without a join, branches that reach the join, a sibling
or the fork point, agents reached twice or never, cycles, hand-offs the directory does not allow,
and conditions or ``${steps...}`` params that name no earlier step (docs/graphs.md). Pure
functions over a loaded :class:`Workflow`, each problem located in its file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.identity import Directory
from orchestrator.workflows._graph import (
    branch_agents,
    branch_ends,
    earlier_steps,
    ways_in,
)
from orchestrator.workflows._model import HandOff, Workflow, names_in, step_of
from orchestrator.workflows._when import parse_condition

Loc = tuple[Any, ...]


@dataclass(frozen=True)
class Problem:
    loc: Loc
    message: str


def _edge_loc(index: int, edge: int) -> Loc:
    return ("agents", index, "hand_off", edge)


def check_graph(workflow: Workflow, directory: Directory) -> list[Problem]:
    """Every problem of the graph, the most basic first: unknown agents, fan-outs without a
    join, agents reached twice or never, cycles, hand-offs the directory does not allow, and
    conditions or ``${steps...}`` params that name no earlier step."""
    problems = _shape(workflow)
    if problems:
        return problems
    problems = _branches(workflow)
    if problems:
        return problems
    problems = _reach(workflow)
    if problems:
        return problems
    return _allowed(workflow, directory) + _step_references(workflow)


def _shape(workflow: Workflow) -> list[Problem]:
    names = {plan.agent for plan in workflow.agents}
    problems: list[Problem] = []
    for a, plan in enumerate(workflow.agents):
        for e, edge in enumerate(plan.edges):
            loc = _edge_loc(a, e)
            for target in (*edge.to, *((edge.join,) if edge.join else ())):
                if target not in names:
                    problems.append(Problem(loc, f"{target} is not an agent of this workflow"))
            if edge.fan_out and edge.join is None:
                problems.append(Problem(loc, "a fan-out needs join: <agent>, the agent that "
                                             "waits for its branches"))
            if edge.join is not None and not edge.fan_out:
                problems.append(Problem((*loc, "join"), "join needs a fan-out (two or more "
                                                        "agents in to)"))
            if edge.join is not None and edge.join in edge.to:
                problems.append(Problem((*loc, "join"), f"{edge.join} cannot be both a branch "
                                                        "and the join"))
            if edge.fan_out and len(set(edge.to)) != len(edge.to):
                problems.append(Problem((*loc, "to"), "a branch is named twice"))
    return problems


def _branches(workflow: Workflow) -> list[Problem]:
    """A branch is a sub-chain of its own: it hands off one agent at a time, never to the join
    (which waits for it), another branch's agents or an agent before its fork."""
    index = {plan.agent: a for a, plan in enumerate(workflow.agents)}
    problems: list[Problem] = []
    for plan in workflow.agents:
        for edge in plan.edges:
            if not edge.fan_out or edge.join is None:
                continue
            before = _before(workflow, plan.agent)
            stop = frozenset({*edge.to, *before, plan.agent, edge.join})
            chains = {head: branch_agents(workflow, head, stop) for head in edge.to}
            for head, chain in chains.items():
                others = {a for h, c in chains.items() if h != head for a in c}
                for agent in chain:
                    if agent not in index:
                        continue
                    for e, way in enumerate(workflow.plan(agent).edges):
                        problems += _branch_way(_edge_loc(index[agent], e), agent, way,
                                                plan.agent, edge, head, others, before)
    return problems


def _branch_way(loc: Loc, agent: str, way: HandOff, fork: str, fan_out: HandOff, head: str,
                others: set[str], before: set[str]) -> list[Problem]:
    whose = f"{head}'s branch of {fork}'s fan-out"
    if way.fan_out:
        return [Problem(loc, f"{agent} is in {whose}: a branch hands off to one agent at a "
                             "time (no fan-out inside a branch)")]
    target = way.to[0]
    if target == fan_out.join:
        return [Problem(loc, f"{agent} is in {whose}: it cannot hand off to the join "
                             f"{target}, which starts once every branch has ended")]
    if target in others:
        return [Problem(loc, f"{agent} is in {whose}: it cannot hand off to {target}, an "
                             "agent of another branch")]
    if target == fork or target in before:
        return [Problem(loc, f"{agent} is in {whose}: it cannot hand off to {target}, which "
                             f"runs before the fork (a cycle)")]
    return []


def _before(workflow: Workflow, agent: str) -> set[str]:
    """The agents on the way from the first agent to ``agent``."""
    ways, out = ways_in(workflow), set()
    while agent != workflow.root_agent and ways.get(agent):
        agent = ways[agent][0].parent
        if agent in out:  # a cycle (refused by _reach)
            break
        out.add(agent)
    return out


def _reach(workflow: Workflow) -> list[Problem]:
    ways = ways_in(workflow)
    root = workflow.root_agent
    problems: list[Problem] = []
    for a, plan in enumerate(workflow.agents):
        into = ways[plan.agent]
        if plan.agent == root and into:
            problems.append(Problem(("agents", a, "agent"),
                                    f"{root} runs first; nothing may hand off to it (a cycle)"))
        elif len(into) > 1:
            sources = ", ".join(sorted({w.parent for w in into}))
            problems.append(Problem(("agents", a, "agent"),
                                    f"{plan.agent} is reached from several ways ({sources}); "
                                    "an agent has one way in (a join waits for a fan-out)"))
    if problems:
        return problems
    for a, plan in enumerate(workflow.agents):
        path = [plan.agent]
        while path[-1] != root:
            into = ways[path[-1]]
            if not into:
                problems.append(Problem(("agents", a, "agent"),
                                        f"{plan.agent} is never reached from {root}"))
                break
            if into[0].parent in path:  # each is handed off to by the one after it in path
                loop = path[path.index(into[0].parent):]
                cycle = " -> ".join([into[0].parent, *reversed(loop)])
                problems.append(Problem(("agents", a, "agent"), f"a cycle: {cycle}"))
                break
            path.append(into[0].parent)
    return problems


def _allowed(workflow: Workflow, directory: Directory) -> list[Problem]:
    problems: list[Problem] = []
    for a, plan in enumerate(workflow.agents):
        declared = directory.agents[plan.agent].hands_off_to \
            if plan.agent in directory.agents else ()
        for e, edge in enumerate(plan.edges):
            loc = _edge_loc(a, e)
            for target in edge.to:
                if target not in declared:
                    problems.append(Problem(loc, f"the directory does not let {plan.agent} "
                                                 f"hand off to {target} (hands_off_to)"))
            for branch in edge.to if edge.join is not None else ():
                # The head: the join's exchange names its token (the authorization server's
                # rule); each agent that may end the branch: the join waits for it.
                for end in dict.fromkeys((branch, *branch_ends(workflow, branch))):
                    after = directory.agents[end].hands_off_to \
                        if end in directory.agents else ()
                    if edge.join in after:
                        continue
                    why = "a join continues from every branch it waits for" if end == branch \
                        else f"{end} may end {branch}'s branch, and the join waits for it"
                    problems.append(Problem((*loc, "join"), (
                        f"the directory does not let {end} hand off to {edge.join} "
                        f"(hands_off_to): {why}")))
    return problems


def _step_references(workflow: Workflow) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for a, plan in enumerate(workflow.agents):
        known = earlier_steps(workflow, plan.agent)
        for s, step in enumerate(plan.steps):
            loc = ("agents", a, "steps", s)
            if step.when is not None:
                problems += _unknown(loc + ("when",), parse_condition(step.when).step_ids, known)
            for param, value in step.params.items():
                used = {i for i in (step_of(n) for n in names_in(value)) if i is not None}
                problems += _unknown(loc + ("params", param), used, known)
            if step.id is not None:
                if step.id in seen:
                    problems.append(Problem(loc + ("id",), f"step id {step.id} is used twice "
                                                           f"(also by {seen[step.id]})"))
                seen[step.id] = plan.agent
                known = known | {step.id}
        for e, edge in enumerate(plan.edges):
            if edge.when is not None:
                problems += _unknown(_edge_loc(a, e) + ("when",),
                                     parse_condition(edge.when).step_ids, known)
    return problems


def _unknown(loc: Loc, used: set[str] | frozenset[str], known: set[str]) -> list[Problem]:
    return [Problem(loc, f"steps.{name} names no step that runs earlier")
            for name in sorted(used - known)]
