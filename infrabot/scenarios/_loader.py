"""Loading scenario files: every error names the file, the line and what is wrong.

A scenario is checked on its own (the schema) and against the workflows folder it will run with:
the workflow it names, the agents and actions its expectations mention, and the directory its
changes produce must all exist and be valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infrabot.scenarios._model import HAND_OFF, Scenario
from orchestrator._yamlfile import line_of, load_yaml
from orchestrator.catalog import CATALOG
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import Workflow

Lines = dict[tuple[Any, ...], int]


@dataclass(frozen=True)
class ScenarioFile:
    """A loaded scenario and the file it came from."""

    path: Path
    scenario: Scenario

    @property
    def name(self) -> str:
        return self.scenario.name


def _yaml_loc(loc: tuple[Any, ...], lines: Lines) -> tuple[Any, ...]:
    """``loc`` without pydantic's own segments (union members, validators): a path in the file."""
    out: tuple[Any, ...] = ()
    for part in loc:
        if (*out, part) in lines:
            out = (*out, part)
    return out


def _located(path: Path, lines: Lines, loc: tuple[Any, ...], message: str) -> ConfigError:
    where = ".".join(str(p) for p in loc) or "(top level)"
    return ConfigError(f"{path}:{line_of(lines, loc)}: {where}: {message}")


def _schema_error(path: Path, lines: Lines, exc: ValidationError) -> ConfigError:
    """The most specific error: the one whose location reaches deepest into the file."""
    best: tuple[tuple[Any, ...], str] | None = None
    for error in exc.errors():
        loc = _yaml_loc(tuple(error["loc"]), lines)
        if best is None or len(loc) > len(best[0]):
            best = (loc, _message(error))
    assert best is not None
    return _located(path, lines, *best)


def _message(error: Any) -> str:
    names = [p for p in error["loc"] if isinstance(p, str)]
    if error["type"] == "missing" and names:
        return f"{names[-1]} is required"
    if error["type"] == "literal_error" and error.get("ctx", {}).get("expected") == "'not_run'":
        return "must be not_run or a list of steps"
    return str(error["msg"]).removeprefix("Value error, ")


def load_scenario(path: Path, directory: Directory, workflows: Mapping[str, Workflow]
                  ) -> ScenarioFile:
    """Load one scenario file and check it against the directory and workflows it will use."""
    data, lines = load_yaml(path)
    try:
        scenario = Scenario.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise _schema_error(path, lines, exc) from exc
    _check_references(path, lines, scenario, directory, workflows)
    return ScenarioFile(path, scenario)


def _check_references(path: Path, lines: Lines, s: Scenario, directory: Directory,
                      workflows: Mapping[str, Workflow]) -> None:

    def fail(loc: tuple[Any, ...], message: str) -> None:
        raise _located(path, lines, loc, message)

    for loc, name in ((("workflow",), s.workflow), (("expect", "workflow"), s.expect.workflow)):
        if name is not None and name not in workflows:
            fail(loc, f"no workflow named {name!r} (known: {', '.join(sorted(workflows))})")
    for agent, change in s.changes.agents.items():
        if agent not in directory.agents:
            fail(("changes", "agents", agent), f"{agent} is not an agent in the directory")
        for i, target in enumerate(change.hands_off_to or ()):
            if target not in directory.agents:
                fail(("changes", "agents", agent, "hands_off_to", i), f"{target} is not an agent")
    for agent in s.changes.hand_off_scopes:
        if not any(p.agent == agent and p.hand_off for w in workflows.values() for p in w.agents):
            fail(("changes", "hand_off_scopes", agent), f"{agent} hands off in no workflow")
    for name, by_env in s.changes.values.items():
        if name not in workflows:
            fail(("changes", "values", name), f"no workflow named {name!r}")
            continue
        known = workflows[name].values
        for env, named in by_env.items():
            for value in named:
                if value not in known.get(env, {}):
                    fail(("changes", "values", name, env, value),
                         f"{name} has no value {value!r} for environment {env}")
    revoke = s.changes.revoke
    if revoke is not None and revoke.after != "root_grant" and revoke.after not in directory.agents:
        fail(("changes", "revoke", "after"), f"{revoke.after} is not an agent in the directory")
    for agent, hop in s.expect.hops.items():
        if agent not in directory.agents:
            fail(("expect", "hops", agent), f"{agent} is not an agent in the directory")
        for i, step in enumerate(() if isinstance(hop, str) else hop):
            if step.step != HAND_OFF and step.step not in CATALOG:
                fail(("expect", "hops", agent, i, "step"),
                     f"unknown action {step.step!r} (or {HAND_OFF} for the hand-off)")
    try:
        changed_directory(directory, s)
    except ValidationError as exc:
        fail(("changes",), "the changed directory is invalid: "
             + str(exc.errors()[0]["msg"]).removeprefix("Value error, "))


def changed_directory(directory: Directory, scenario: Scenario) -> Directory:
    """The directory with the scenario's user, agent and context-rule changes applied."""
    changes = scenario.changes
    data = directory.model_dump(mode="json")
    for user, change in changes.users.items():
        data["users"][user] = {**data["users"].get(user, {}),
                               **change.model_dump(mode="json", exclude_none=True)}
    for agent, agent_change in changes.agents.items():
        data["agents"][agent] = {**data["agents"][agent],
                                 **agent_change.model_dump(mode="json", exclude_none=True)}
    if changes.context_rules is not None:
        data["context_rules"] = [r.model_dump(mode="json") for r in changes.context_rules]
    return Directory.model_validate(data)


def scenario_files(folder: Path) -> list[Path]:
    """The scenario files directly in ``folder``, by name."""
    return sorted(p for p in folder.glob("*.yaml") if p.is_file())


def load_scenarios(paths: Iterable[Path], directory: Directory,
                   workflows: Mapping[str, Workflow]) -> list[ScenarioFile]:
    """Load every file; two scenarios with one name are an error naming both files."""
    loaded: list[ScenarioFile] = []
    seen: dict[str, Path] = {}
    for path in paths:
        item = load_scenario(path, directory, workflows)
        if item.name in seen and seen[item.name].resolve() != path.resolve():
            raise ConfigError(f"{path}:1: scenario name {item.name!r} is also used by "
                              f"{seen[item.name]}")
        if item.name not in seen:
            seen[item.name] = path
            loaded.append(item)
    return loaded


def select_scenarios(wanted: Iterable[str], folder: Path) -> list[Path]:
    """Paths for ``wanted``: each a scenario file's path, or a name in ``folder`` (the file's
    stem, else a scenario's ``name``). Nothing wanted: every scenario in ``folder``."""
    wanted = list(wanted)
    if not wanted:
        found = scenario_files(folder) if folder.is_dir() else []
        if not found:
            raise ConfigError(f"no scenario files (*.yaml) in {folder}")
        return found
    out: list[Path] = []
    for item in wanted:
        as_path = Path(item)
        if as_path.suffix in (".yaml", ".yml") or as_path.is_file():
            if not as_path.is_file():
                raise ConfigError(f"{item}: no such scenario file")
            out.append(as_path)
        elif (folder / f"{item}.yaml").is_file():
            out.append(folder / f"{item}.yaml")
        else:
            out.append(_by_name(item, folder))
    unique: dict[Path, Path] = {}
    for path in out:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _by_name(name: str, folder: Path) -> Path:
    for path in scenario_files(folder) if folder.is_dir() else []:
        data, _ = load_yaml(path)
        if isinstance(data, dict) and data.get("name") == name:
            return path
    raise ConfigError(f"no scenario named {name!r} in {folder}")
