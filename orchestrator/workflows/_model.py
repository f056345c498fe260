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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.identity import is_scope
from orchestrator.workflows._when import lookup, parse_condition

EventType = Literal["deployment", "workflow_run"]
EVENT_TYPES: tuple[EventType, ...] = ("deployment", "workflow_run")
TEMPLATE_FIELDS = ("service", "environment", "repository", "owner", "repo", "commit", "pr",
                   "run_id", "user", "now", "window_start")
_NAME = r"^[a-z][a-z0-9-]{0,63}$"
_AGENT = r"^agent:[a-z0-9][a-z0-9_.-]{0,63}$"
_WHOLE = re.compile(r"\$\{([_a-z][_a-z0-9]*(?:\.[a-z0-9_*-]+)*)\}", re.IGNORECASE)
STEP_ID = r"^[a-z][a-z0-9_]{0,63}$"
STEPS = "steps."
Scalar = str | int | float | bool
Value = Scalar | list[Scalar]
ValueName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Template(string.Template):
    """``${name}``, and ``${steps.<id>.<path>}``: an earlier step's result."""

    braceidpattern = r"(?a:[_a-z][_a-z0-9]*(?:\.[a-z0-9_*-]+)*)"


def render(template: str, values: Mapping[str, object]) -> str:
    return _Template(template).substitute({k: str(v) for k, v in values.items()})


def step_of(name: str) -> str | None:
    """The step id a ``${steps.<id>...}`` name reads, else None."""
    return name.split(".")[1] if name.startswith(STEPS) and name.count(".") >= 1 else None


def names_in(value: Any, *, embedded: bool = False) -> Iterator[str]:
    """Every ``${field}`` name the strings of a JSON-like value use (only those inside a longer
    string when ``embedded``); raises ``ValueError`` for a malformed placeholder."""
    if isinstance(value, str):
        template = _Template(value)
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


def _condition(text: str | None) -> str | None:
    if text is not None:
        parse_condition(text)  # ConditionError is a ValueError: pydantic names the field
    return text


When = Annotated[str | None, AfterValidator(_condition)]


def with_step_results(params: Mapping[str, Any], values: Mapping[str, object],
                      steps: Mapping[str, Any]) -> dict[str, object]:
    """``values`` and every ``${steps.<id>.<path>}`` the params use, read from the earlier
    steps' results (``None`` where the path leads nowhere)."""
    out = dict(values)
    for name in names_in(list(params.values())):
        step = step_of(name)
        if step is not None:
            out[name] = lookup(steps.get(step), name.split(".")[2:])
    return out


class Step(_Model):
    action: str = Field(pattern=r"^[a-z][a-z0-9]*(\.[A-Za-z0-9_]+)+$")  # <service>.<operationId>
    id: str | None = Field(None, pattern=STEP_ID,
                           description="Names the step's result: steps.<id> in later steps.")
    when: When = Field(None, description="Run the step only when this holds.")
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


class HandOff(_Model):
    """One way on from an agent: to one agent, or to several at once (a fan-out) that
    ``join`` waits for; taken only ``when`` its condition holds (the first that holds)."""

    to: tuple[Annotated[str, Field(pattern=_AGENT)], ...] = Field(min_length=1)
    when: When = None
    join: str | None = Field(None, pattern=_AGENT)

    @field_validator("to", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @property
    def fan_out(self) -> bool:
        return len(self.to) > 1


class AgentPlan(_Model):
    agent: str = Field(pattern=_AGENT)
    steps: tuple[Step, ...] = ()
    hand_off: tuple[HandOff, ...] | None = Field(
        None, description="The next agent, or the ways on (fan-outs and conditions).")
    hand_off_scopes: tuple[str, ...] | None = Field(
        None, description="Scopes to hand off; default: what the rest of the chain needs.")

    @field_validator("hand_off", mode="before")
    @classmethod
    def _one_agent(cls, value: Any) -> Any:
        """``hand_off: agent:x`` is one way on, to that agent, without a condition."""
        return [{"to": value}] if isinstance(value, str) else value

    @property
    def edges(self) -> tuple[HandOff, ...]:
        """The ways on, in order."""
        return self.hand_off or ()


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
    def _check_agents(self) -> Workflow:
        names = [plan.agent for plan in self.agents]
        if len(set(names)) != len(names):
            raise ValueError("an agent appears twice in the workflow")
        return self

    @property
    def root_agent(self) -> str:
        return self.agents[0].agent

    def plan(self, agent: str) -> AgentPlan:
        for plan in self.agents:
            if plan.agent == agent:
                return plan
        raise KeyError(agent)

    def placeholders(self) -> frozenset[str]:
        """Every ``${name}`` its steps' params use (the event fields a run of it needs)."""
        return frozenset(name for plan in self.agents for step in plan.steps
                         for name in names_in(list(step.params.values())))

    def values_for(self, environment: str) -> dict[str, Value]:
        """The workflow's own template values for a run in ``environment``."""
        return dict(self.values.get(environment, {}))

    def matches(self, event_type: str, environment: str, trigger: str, task: str) -> bool:
        t = self.trigger
        return (event_type in t.events and environment in t.environments
                and trigger in t.triggers and task == t.task)
