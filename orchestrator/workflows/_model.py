"""Declarative workflows: a trigger, and per agent the steps it performs and whom it hands off to.

A step names a service action from the catalogue (``datadog.metrics.query``); its scope is the
scope that action requires. Parameters may use ``${service}``, ``${environment}``,
``${repository}`` (``${owner}``/``${repo}``), ``${commit}``, ``${pr}``, ``${run_id}``, ``${user}``,
``${now}`` and ``${window_start}`` (epoch seconds: the run's start and 15 minutes before), filled
from the run's event when the step runs, and the workflow's own ``values:`` for the run's
environment (environment -> {name: value}: the resources a run acts on in that environment). A
parameter that is exactly ``${name}`` takes the value with its type (a list stays a list, a number
a number); inside a longer string the value is written as text. The loader checks that every
environment the workflow triggers in has a value for every name its steps use.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.identity import is_scope

EventType = Literal["deployment", "workflow_run"]
EVENT_TYPES: tuple[EventType, ...] = ("deployment", "workflow_run")
TEMPLATE_FIELDS = ("service", "environment", "repository", "owner", "repo", "commit", "pr",
                   "run_id", "user", "now", "window_start")
_NAME = r"^[a-z][a-z0-9-]{0,63}$"
_AGENT = r"^agent:[a-z0-9][a-z0-9_.-]{0,63}$"
_WHOLE = re.compile(r"\$\{([_a-z][_a-z0-9]*)\}", re.IGNORECASE)
Scalar = str | int | float | bool
Value = Scalar | list[Scalar]
ValueName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def render(template: str, values: Mapping[str, object]) -> str:
    return string.Template(template).substitute({k: str(v) for k, v in values.items()})


def names_in(value: Any, *, embedded: bool = False) -> Iterator[str]:
    """Every ``${field}`` name the strings of a JSON-like value use (only those inside a longer
    string when ``embedded``); raises ``ValueError`` for a malformed placeholder."""
    if isinstance(value, str):
        template = string.Template(value)
        if not template.is_valid():
            raise ValueError(f"malformed ${{...}} placeholder in {value!r}")
        if not (embedded and whole_name(value) is not None):
            yield from template.get_identifiers()
    elif isinstance(value, list):
        for item in value:
            yield from names_in(item, embedded=embedded)
    elif isinstance(value, dict):
        for item in value.values():
            yield from names_in(item, embedded=embedded)


def whole_name(value: Any) -> str | None:
    """The name when ``value`` is exactly one ``${name}`` placeholder, else ``None``."""
    whole = _WHOLE.fullmatch(value) if isinstance(value, str) else None
    return whole.group(1) if whole is not None else None


def render_value(value: Any, values: Mapping[str, object]) -> Any:
    """Fill every ``${field}`` in the strings of a JSON-like value; a string that is exactly
    ``${field}`` becomes the value itself, with its type."""
    if isinstance(value, str):
        name = whole_name(value)
        return values[name] if name is not None else render(value, values)
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    return value


class Step(_Model):
    action: str = Field(pattern=r"^[a-z][a-z0-9]*(\.[A-Za-z0-9_]+)+$")  # <service>.<operationId>
    params: dict[str, Any] = {}
    scope: str | None = Field(None, description="Optional; must equal the action's scope.")
    description: str = ""

    @model_validator(mode="after")
    def _check_templates(self) -> Step:
        for name, value in self.params.items():
            try:
                list(names_in(value))
            except ValueError as exc:
                raise ValueError(f"params.{name}: {exc}") from None
        if self.scope is not None and not is_scope(self.scope):
            raise ValueError(f"{self.scope!r} is not a scope of the form urn:infra:<area>:<verb>")
        return self

    def rendered_params(self, values: Mapping[str, object]) -> dict[str, Any]:
        return {k: render_value(v, values) for k, v in self.params.items()}


class AgentPlan(_Model):
    agent: str = Field(pattern=_AGENT)
    steps: tuple[Step, ...] = ()
    hand_off: str | None = Field(None, pattern=_AGENT)
    hand_off_scopes: tuple[str, ...] | None = Field(
        None, description="Scopes to hand off; default: what the rest of the chain needs.")


class Trigger(_Model):
    events: tuple[EventType, ...] = EVENT_TYPES
    environments: tuple[str, ...] = Field(min_length=1)
    triggers: tuple[Literal["ci_pipeline", "manual"], ...] = ("ci_pipeline",)
    task: str = Field("deploy", pattern=_NAME, description="GitHub deployment task it answers.")


class Workflow(_Model):
    name: str = Field(pattern=_NAME)
    description: str = ""
    trigger: Trigger
    agents: tuple[AgentPlan, ...] = Field(min_length=1)
    values: dict[str, dict[ValueName, Value]] = Field(
        {}, description="Per environment, the values its runs fill ${name} params with.")

    @model_validator(mode="after")
    def _check_chain(self) -> Workflow:
        names = [plan.agent for plan in self.agents]
        if len(set(names)) != len(names):
            raise ValueError("an agent appears twice in the chain")
        for index, plan in enumerate(self.agents):
            expected = names[index + 1] if index + 1 < len(names) else None
            if plan.hand_off != expected:
                wanted = f"hand_off: {expected}" if expected else "no hand_off (last agent)"
                raise ValueError(f"agents.{index} ({plan.agent}) must have {wanted}")
        return self

    @property
    def root_agent(self) -> str:
        return self.agents[0].agent

    def plan(self, agent: str) -> AgentPlan:
        for plan in self.agents:
            if plan.agent == agent:
                return plan
        raise KeyError(agent)

    def values_for(self, environment: str) -> dict[str, Value]:
        """The workflow's own template values for a run in ``environment``."""
        return dict(self.values.get(environment, {}))

    def matches(self, event_type: str, environment: str, trigger: str, task: str) -> bool:
        t = self.trigger
        return (event_type in t.events and environment in t.environments
                and trigger in t.triggers and task == t.task)
