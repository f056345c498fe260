"""``infrabot workflows list|check``: the workflows, and what a user's run would be allowed.

``check`` exits 0 when every exchange of the run would be allowed, 1 when some would be refused
(or never reached) or when the run would never start (the event it names starts no workflow, or
another one: chosen as the receiver chooses, :func:`orchestrator.workflows.select`), 2 for bad
input (an unknown workflow or user, a broken workflows folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from infrabot.cli._check import BadInput
from infrabot.cli._common import (
    CommandError,
    load_settings,
    out_console,
    state_dir_option,
)
from infrabot.cli._users import known_user
from orchestrator._words import plural
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import (
    Workflow,
    graph_order,
    load_directory,
    load_workflows,
    required_scopes,
    select,
)

_VERDICT_STYLE = {"allow": ("✓ allow", "green"), "refuse": ("✗ refuse", "red"),
                  "not_reached": ("· not reached", "yellow")}


def _load(state_dir: Path | None) -> tuple[Settings, Directory, dict[str, Workflow]]:

    settings = load_settings(state_dir, state="unused")
    try:
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        return settings, directory, load_workflows(settings.workflows_dir, directory)
    except ConfigError as exc:
        raise BadInput(exc.message) from None


@click.group("workflows")
def workflows() -> None:
    """List the workflows and check, before running, what a user's run would be allowed.

    \b
    Example:
      infrabot workflows check post-deploy --user user:alex
    """


def workflow_summary(workflow: Workflow) -> dict[str, Any]:

    t = workflow.trigger
    return {"name": workflow.name, "description": workflow.description,
            "trigger": {"events": list(t.events), "environments": list(t.environments),
                        "triggers": list(t.triggers), "task": t.task},
            "agents": [p.agent for p in workflow.agents],
            "graph": graph_lines(workflow),
            "steps": sum(len(p.steps) for p in workflow.agents),
            "required_scopes": required_scopes(workflow)}


def graph_lines(workflow: Workflow) -> list[str]:
    """Each way on, one line: ``a → b``, a fan-out ``a → b ∥ c ⇒ join d``, with its ``when``."""
    lines = []
    for agent in graph_order(workflow):
        for edge in workflow.plan(agent).edges:
            line = f"{agent} → {' ∥ '.join(edge.to)}"
            if edge.join is not None:
                line += f" ⇒ join {edge.join}"
            lines.append(line + (f" (when {edge.when})" if edge.when else ""))
    return lines or [workflow.root_agent]


@workflows.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@state_dir_option
def list_workflows(as_json: bool, state_dir: Path | None) -> None:
    """Each workflow: its trigger, its graph (hand-offs, fan-outs, joins, conditions), its
    steps and the scopes it needs.

    \b
    Example:
      infrabot workflows list
      infrabot workflows list --json
    """
    _, _, found = _load(state_dir)
    rows = [workflow_summary(found[name]) for name in sorted(found)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="workflows", title_justify="left")
    for name in ("workflow", "trigger", "agents", "steps", "required scopes"):
        table.add_column(name, overflow="fold")
    for row in rows:
        t = row["trigger"]
        trigger = (f"{' | '.join(t['events'])}\nin {', '.join(t['environments'])}\n"
                   f"by {', '.join(t['triggers'])}\ntask {t['task']}")
        table.add_row(row["name"], trigger, "\n".join(row["graph"]), str(row["steps"]),
                      "\n".join(row["required_scopes"]))
    out_console().print(table)


@workflows.command("check")
@click.argument("name")
@click.option("--user", "user", required=True, help="The user the run is for: alex or user:alex.")
@click.option("--env", "environment", default="prod", show_default=True,
              help="The environment the run is in.")
@click.option("--trigger", type=click.Choice(["ci_pipeline", "manual"]), default="ci_pipeline",
              show_default=True, help="What starts the run.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@state_dir_option
def check_workflow(name: str, user: str, environment: str, trigger: str, as_json: bool,
                   state_dir: Path | None) -> None:
    """Which steps of workflow NAME a run for --user would be allowed, and why not.

    Computed before anything runs, with the same identity core the authorization server uses:
    the root grant (what the workflow needs, the user holds and the context rules permit), then
    per hop each step's exchange and the hand-off. Shows the scopes the user lacks, what the
    context forbids and the chain's depth against max_depth.

    The run must first start: a CI event of --trigger in --env must start NAME, chosen as the
    webhook receiver chooses (the first workflow by name whose trigger takes the event's type,
    environment, trigger and task). If it starts none (the receiver answers 422
    no_matching_workflow) or another workflow, that is one line and exit status 1.

    \b
    Exit status:
      0  every exchange would be allowed
      1  some would be refused or never reached, or the run would never start
      2  unknown workflow or user, a bad --env, a broken workflows folder

    \b
    Example:
      infrabot workflows check post-deploy --user sam
      infrabot workflows check manual-check --user sam --env prod --trigger manual
    """
    from infrabot.scenarios import preflight  # deferred: scenarios import the whole system

    settings, directory, found = _load(state_dir)
    if name not in found:
        raise BadInput(f"no workflow named {name!r} (known: {', '.join(sorted(found))})")
    try:
        user_id = known_user(directory, user)
    except CommandError as exc:
        raise BadInput(exc.message) from None
    try:
        result = preflight(found[name], user_id, directory, settings, environment=environment,
                           trigger=trigger)
    except ConfigError as exc:
        raise BadInput(exc.message) from None
    except ValidationError as exc:  # the context: --env (or --trigger) is not a context value
        first = exc.errors()[0]
        raise BadInput(f"--env {environment!r}: {first['msg']}") from None
    why = never_starts(found, found[name], environment, trigger)
    if why is not None:
        raise CommandError(why)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        out_console().print(render_preflight(result))
    if not result.all_allowed:
        click.get_current_context().exit(1)


def never_starts(found: dict[str, Workflow], workflow: Workflow, environment: str,
                 trigger: str) -> str | None:
    """Why no CI event of ``trigger`` in ``environment`` would start ``workflow`` (None: one of
    its event types would), judged by :func:`select`, the receiver's own choice: per event type
    the workflow takes, the workflow that event starts, or the receiver's refusal reason."""
    t = workflow.trigger
    refused: dict[str, list[str]] = {}  # the receiver's reason -> the event types it refuses
    others: dict[str, list[str]] = {}  # another workflow -> the event types that start it
    for event_type in t.events:
        try:
            chosen = select(found, event_type=event_type, environment=environment,
                            trigger=trigger, task=t.task)
        except ConfigError as exc:
            refused.setdefault(exc.reason, []).append(event_type)
            continue
        if chosen.name == workflow.name:
            return None
        others.setdefault(chosen.name, []).append(event_type)

    def event(types: list[str]) -> str:
        return f"a {trigger} {' or '.join(types)} (task {t.task}) in {environment}"

    parts = [f"{reason}: no workflow handles {event(types)}" for reason, types in refused.items()]
    parts += [f"{event(types)} starts {name}" for name, types in others.items()]
    return (f"{workflow.name} would never start: {'; '.join(parts)} ({workflow.name} runs in "
            f"{', '.join(t.environments)}, triggered by {', '.join(t.triggers)})")


def render_preflight(result: Any) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("workflow", result.workflow)
    head.add_row("user", result.user)
    head.add_row("context", f"{result.environment}, triggered by {result.trigger}")
    head.add_row("required", " ".join(result.required))
    head.add_row("user lacks", Text(" ".join(result.user_lacks) or "-",
                                    style="red" if result.user_lacks else ""))
    head.add_row("context forbids", Text(" ".join(result.context_forbids) or "-",
                                         style="red" if result.context_forbids else ""))
    if result.root_error is None:
        head.add_row("root grant", " ".join(result.root_granted))
    else:
        head.add_row("root grant", Text(f"refused: {result.root_error} ({result.root_reason})",
                                        style="red"))
    deep = result.depth > result.max_depth
    head.add_row("chain depth", Text(f"{result.depth} agents, max_depth {result.max_depth}",
                                     style="red" if deep else ""))
    table = Table(title="exchanges, in run order", title_justify="left")
    for column in ("agent", "step", "scopes", "verdict", "why"):
        table.add_column(column, overflow="fold", no_wrap=column in ("agent", "verdict"))
    for s in result.steps:
        label, style = _VERDICT_STYLE[s.verdict]
        step = f"hand-off → {s.hand_off_to}" if s.step == "hand_off" else s.step
        code = f"{s.error} ({s.reason})" if s.error else (s.reason or "")
        why = "\n".join([code] * bool(code) + list(s.causes))
        table.add_row(s.agent, step, "\n".join(s.scopes), Text(label, style=style), why)
    allowed = sum(s.verdict == "allow" for s in result.steps)
    total = len(result.steps)
    verdict = (Text(f"all {plural(total, 'exchange')} would be allowed", style="bold green")
               if result.all_allowed else
               Text(f"{total - allowed} of {plural(total, 'exchange')} would be refused or not "
                    "reached", style="bold red"))
    return Group(head, table, verdict)
