"""Loading and checking workflow files: every error names the file, the line and what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator._yamlfile import line_of, load_yaml
from orchestrator.catalog import CATALOG
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory, is_scope
from orchestrator.services import load_and_install
from orchestrator.workflows._graph import subtree_scopes
from orchestrator.workflows._graph_checks import check_graph
from orchestrator.workflows._model import TEMPLATE_FIELDS, Workflow, names_in, step_of

NOT_WORKFLOWS = frozenset({"directory.yaml"})
ScopeOf = Callable[[str], str | None]
Lines = dict[tuple[Any, ...], int]


def _catalogue_scope(action: str) -> str | None:

    entry = CATALOG.get(action)
    return entry.scope if entry is not None else None


def load_workflow(path: Path, directory: Directory, scope_of: ScopeOf = _catalogue_scope
                  ) -> Workflow:
    data, lines = load_yaml(path)
    try:
        workflow = Workflow.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        raise ConfigError(f"{path}:{line_of(lines, loc)}: {where}: {first['msg']}") from exc
    for a, plan in enumerate(workflow.agents):
        _check_agent(path, lines, directory, a, plan.agent, plan.hand_off_scopes)
        for s, step in enumerate(plan.steps):
            loc = ("agents", a, "steps", s)
            scope = scope_of(step.action)
            if scope is None:
                _fail(path, lines, (*loc, "action"), f"unknown action {step.action!r}")
            if step.scope is not None and step.scope != scope:
                _fail(path, lines, (*loc, "scope"),
                      f"{step.action} requires {scope}, not {step.scope}")
    _check_values(path, lines, workflow)
    for problem in check_graph(workflow, directory):
        _fail(path, lines, problem.loc, problem.message)
    _check_hand_off_scopes(path, lines, workflow, scope_of)
    return workflow


def _check_hand_off_scopes(path: Path, lines: Lines, workflow: Workflow,
                           scope_of: ScopeOf) -> None:
    """Every hand-off carries a scope: what its target and the agents after it need. A target
    with no step and nothing after it that has one would ask for none, which the server
    refuses (an empty ``scope`` is malformed, and no scope asked would grant everything)."""
    for a, plan in enumerate(workflow.agents):
        for e, edge in enumerate(plan.edges):
            for target in (*edge.to, *((edge.join,) if edge.join else ())):
                if not downstream_scopes(workflow, plan.agent, target, scope_of):
                    _fail(path, lines, ("agents", a, "hand_off", e),
                          f"{target} needs no scope: it has no step and no agent after it has "
                          "one, and a hand-off carries the scopes its target needs (give it a "
                          "step, or leave it out)")


def _check_values(path: Path, lines: Lines, workflow: Workflow) -> None:
    """Every ``${name}`` a step uses is a built-in field or has a value in every environment
    the workflow triggers in; every value is used, and a list never inside a longer string."""
    for env, named in workflow.values.items():
        for name in named:
            if name in TEMPLATE_FIELDS:
                _fail(path, lines, ("values", env, name),
                      f"{name} is a built-in field; a workflow value cannot replace it")
    defined = {name for named in workflow.values.values() for name in named}
    used: set[str] = set()
    for a, plan in enumerate(workflow.agents):
        for s, step in enumerate(plan.steps):
            for param, value in step.params.items():
                loc = ("agents", a, "steps", s, "params", param)
                for name in dict.fromkeys(names_in(value)):
                    if step_of(name) is not None:
                        continue  # an earlier step's result: checked with the graph
                    used.add(name)
                    _check_use(path, lines, workflow, loc, name, defined, value)
    for env, named in workflow.values.items():
        for name in named:
            if name not in used:
                _fail(path, lines, ("values", env, name), f"{name} is used by no step")


def _check_use(path: Path, lines: Lines, workflow: Workflow, loc: tuple[Any, ...], name: str,
               defined: set[str], value: Any) -> None:
    if name in TEMPLATE_FIELDS:
        return
    if name not in defined:
        _fail(path, lines, loc, f"unknown field ${{{name}}}: neither a built-in field "
                                f"({', '.join(TEMPLATE_FIELDS)}) nor in values")
    for env in workflow.trigger.environments:
        named = workflow.values.get(env, {})
        if name not in named:
            _fail(path, lines, loc, f"${{{name}}} has no value for environment {env} "
                                    f"(values.{env}.{name})")
        if isinstance(named[name], list) and name in names_in(value, embedded=True):
            _fail(path, lines, loc, f"${{{name}}} is a list in values.{env}: it cannot be "
                                    "part of a longer string")


def _check_agent(path: Path, lines: Lines, directory: Directory, index: int,
                 agent: str, hand_off_scopes: tuple[str, ...] | None) -> None:
    if agent not in directory.agents:
        _fail(path, lines, ("agents", index, "agent"), f"{agent} is not in the directory")
    for s, scope in enumerate(hand_off_scopes or ()):

        if not is_scope(scope):
            _fail(path, lines, ("agents", index, "hand_off_scopes", s), f"bad scope {scope!r}")


def _fail(path: Path, lines: Lines, loc: tuple[Any, ...], message: str) -> None:
    where = ".".join(str(p) for p in loc)
    raise ConfigError(f"{path}:{line_of(lines, loc)}: {where}: {message}")


def load_workflows(folder: Path, directory: Directory, scope_of: ScopeOf = _catalogue_scope
                   ) -> dict[str, Workflow]:
    """Every ``*.yaml`` workflow directly in ``folder`` (not the directory file), by name. The
    services ``folder`` declares (``services/<name>.openapi.yaml``) are installed into the
    catalogue first, so steps may name their operations."""
    load_and_install(folder, directory)
    found: dict[str, Workflow] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name in NOT_WORKFLOWS:
            continue
        workflow = load_workflow(path, directory, scope_of)
        if workflow.name in found:
            raise ConfigError(f"{path}: workflow name {workflow.name!r} is used twice")
        found[workflow.name] = workflow
    return found


def step_scopes(workflow: Workflow, agent_index: int, scope_of: ScopeOf = _catalogue_scope
                ) -> list[str]:
    """Scopes the steps of one agent need, in order."""
    out: list[str] = []
    for step in workflow.agents[agent_index].steps:
        scope = scope_of(step.action)
        if scope is not None and scope not in out:
            out.append(scope)
    return out


def required_scopes(workflow: Workflow, scope_of: ScopeOf = _catalogue_scope) -> list[str]:
    """What the whole workflow needs: the root grant asks for exactly this."""
    out: list[str] = []
    for index in range(len(workflow.agents)):
        out += [s for s in step_scopes(workflow, index, scope_of) if s not in out]
    return out


def downstream_scopes(workflow: Workflow, agent: str, target: str | None = None,
                      scope_of: ScopeOf = _catalogue_scope) -> list[str]:
    """Scopes ``agent``'s hand-off to ``target`` carries (default: its first hand-off's):
    what ``target`` and the agents after it need (a branch: its own steps; a join: its own and
    after), or the plan's explicit ``hand_off_scopes``."""
    plan = workflow.plan(agent)
    if plan.hand_off_scopes is not None:
        return list(plan.hand_off_scopes)
    if target is None:
        edges = plan.edges
        if not edges:
            return []
        target = edges[0].to[0]
    return subtree_scopes(workflow, target, scope_of)


def select(workflows: Mapping[str, Workflow], *, event_type: str, environment: str,
           trigger: str, task: str = "deploy") -> Workflow:
    """The workflow an event starts (the first by name that matches)."""
    for name in sorted(workflows):
        if workflows[name].matches(event_type, environment, trigger, task):
            return workflows[name]
    raise ConfigError(f"no workflow handles a {trigger} {event_type} ({task}) in {environment}",
                      reason="no_matching_workflow")
