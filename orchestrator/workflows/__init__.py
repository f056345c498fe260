"""Declarative workflows loaded from ``workflows/*.yaml``."""

from orchestrator.workflows._loader import (
    downstream_scopes,
    load_workflow,
    load_workflows,
    required_scopes,
    select,
    step_scopes,
)
from orchestrator.workflows._model import AgentPlan, Step, Trigger, Value, Workflow, render

__all__ = [
    "AgentPlan",
    "Step",
    "Trigger",
    "Value",
    "Workflow",
    "downstream_scopes",
    "load_workflow",
    "load_workflows",
    "render",
    "required_scopes",
    "select",
    "step_scopes",
]
