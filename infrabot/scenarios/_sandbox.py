"""A scenario's private copy of the workflows folder, with its changes applied.

The copy holds ``directory.yaml`` (users, agents and context rules changed as the scenario says),
the declared services (``services/``, verbatim) and the workflow files: verbatim when unchanged, rewritten when an agent's ``hand_off_scopes``
or a workflow's ``values`` are overridden, and only the named workflow, its trigger widened to the event, when the scenario
routes the event to a workflow that the event would not otherwise start.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from infrabot.scenarios._loader import changed_directory
from infrabot.scenarios._model import Scenario
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.services import SERVICES_FOLDER
from orchestrator.workflows import Trigger, Value, Workflow, select


@dataclass(frozen=True)
class Sandbox:
    """What a group of scenarios with the same changes runs with."""

    key: str
    routed_to: str | None  # the workflow the event is routed to, if the copy was re-routed

    def write(self, scenario: Scenario, source: Path, directory: Directory,
              workflows: Mapping[str, Workflow], target: Path) -> Path:
        """Write the private copy for ``scenario`` into ``target``; return it."""
        target.mkdir(parents=True, exist_ok=True)
        _dump(changed_directory(directory, scenario).model_dump(mode="json"),
              target / "directory.yaml")
        services = source / SERVICES_FOLDER  # the declared services, verbatim
        if services.is_dir():
            shutil.copytree(services, target / SERVICES_FOLDER, dirs_exist_ok=True)
        overrides = scenario.changes.hand_off_scopes
        for path in sorted(source.glob("*.yaml")):
            if path.name == "directory.yaml":
                continue
            wf = workflows.get(_name_in(path))
            if wf is None:
                continue
            if self.routed_to is not None and wf.name != self.routed_to:
                continue
            if self.routed_to is not None:
                wf = _routed(wf, scenario)
            changed = _with_values(_with_hand_offs(wf, overrides),
                                   scenario.changes.values.get(wf.name, {}))
            if changed == workflows[wf.name] and self.routed_to is None:
                shutil.copyfile(path, target / path.name)
            else:
                _dump(changed.model_dump(mode="json", exclude_none=True), target / path.name)
        return target


def sandbox_for(scenario: Scenario, workflows: Mapping[str, Workflow]) -> Sandbox:
    """How ``scenario`` must run: re-routed only if its event would start another workflow."""
    wanted, ev = scenario.workflow, scenario.event
    if wanted is not None:
        try:
            chosen: str | None = select(workflows, event_type=ev.type,
                                        environment=ev.environment, trigger=ev.trigger).name
        except ConfigError:
            chosen = None
        if chosen == wanted:
            wanted = None
    route = f"{wanted}:{ev.type}:{ev.environment}:{ev.trigger}" if wanted else "-"
    return Sandbox(key=f"{scenario.changes.system_key()}|{route}", routed_to=wanted)


def _name_in(path: Path) -> str:
    """The ``name`` a workflow file defines (the file was already loaded, so it is valid)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return str(data.get("name")) if isinstance(data, dict) else ""


def _routed(workflow: Workflow, scenario: Scenario) -> Workflow:
    ev = scenario.event
    trigger = Trigger(events=(ev.type,), environments=(ev.environment,), triggers=(ev.trigger,),
                      task="deploy")
    return workflow.model_copy(update={"trigger": trigger})


def _with_hand_offs(workflow: Workflow, overrides: Mapping[str, tuple[str, ...]]) -> Workflow:
    plans = tuple(p.model_copy(update={"hand_off_scopes": overrides[p.agent]})
                  if p.agent in overrides and p.hand_off else p for p in workflow.agents)
    return workflow.model_copy(update={"agents": plans})


def _with_values(workflow: Workflow, overrides: Mapping[str, Mapping[str, Value]]) -> Workflow:
    values = {env: {**named, **overrides.get(env, {})} for env, named in workflow.values.items()}
    return workflow.model_copy(update={"values": values})


def _dump(data: object, path: Path) -> None:
    path.write_text("# written by infrabot check: a scenario's private copy\n"
                    + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
