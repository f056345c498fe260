"""Declarative workflows loaded from ``workflows/*.yaml``, and the directory file beside them."""

from orchestrator.workflows._directory import load_directory
from orchestrator.workflows._graph import (
    Branch,
    branch_agents,
    branch_ends,
    branch_of,
    earlier_steps,
    fork_of,
    graph_order,
    longest_way,
    subtree_scopes,
)
from orchestrator.workflows._graph_checks import Problem, check_graph
from orchestrator.workflows._loader import (
    downstream_scopes,
    load_workflow,
    load_workflows,
    required_scopes,
    select,
    step_scopes,
)
from orchestrator.workflows._model import (
    AgentPlan,
    HandOff,
    Step,
    Trigger,
    Value,
    Workflow,
    render,
    with_step_results,
)
from orchestrator.workflows._when import Condition, ConditionError, parse_condition

__all__ = [
    "AgentPlan",
    "Branch",
    "Condition",
    "ConditionError",
    "HandOff",
    "Problem",
    "Step",
    "Trigger",
    "Value",
    "Workflow",
    "branch_agents",
    "branch_ends",
    "branch_of",
    "check_graph",
    "downstream_scopes",
    "earlier_steps",
    "fork_of",
    "graph_order",
    "load_directory",
    "load_workflow",
    "load_workflows",
    "longest_way",
    "parse_condition",
    "render",
    "required_scopes",
    "select",
    "step_scopes",
    "subtree_scopes",
    "with_step_results",
]
