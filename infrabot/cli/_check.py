"""``infrabot check [SCENARIO ...]``: end-to-end chain tests with expected outcomes.

Exit status: 0 when every expectation of every scenario holds, 1 when any does not (or a
scenario could not run), 2 for a bad scenario file or an unknown scenario (one line naming the
file and line), or a ``--junit`` file that cannot be written (said before any scenario runs).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from infrabot.cli._common import (
    Between,
    check_writable,
    load_settings,
    out_console,
    output_file,
    state_dir_option,
)
from orchestrator.errors import ConfigError
from orchestrator.workflows import load_directory, load_workflows


class BadInput(click.ClickException):
    """One clear line on stderr and exit code 2: the input, not the system, is wrong."""

    exit_code = 2


def default_jobs() -> int:
    """Systems mostly wait (on the broker, on shutdown): a few per CPU, at most 4."""
    return max(1, min(2 * (os.cpu_count() or 1), 4))


@click.command("check")
@click.argument("scenarios", nargs=-1, metavar="[SCENARIO ...]")
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of scenario files; default <workflows dir>/scenarios.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write JUnit XML (one testcase per scenario) to this file.")
@click.option("--jobs", "-j", type=click.IntRange(1, 16), default=None,
              help="Systems run in parallel processes; default: twice the CPUs, at most 4.")
@click.option("--timeout", type=Between(1, 600), default=30.0, show_default=True,
              help="Seconds to wait for each run to end.")
@click.option("--keep", is_flag=True,
              help="Keep each system's state (runs, audit) under STATE_DIR/check/ instead of a "
                   "temporary directory, for `infrabot runs show` and `infrabot audit query`.")
@state_dir_option
def check(scenarios: tuple[str, ...], folder: Path | None, as_json: bool, junit: Path | None,
          jobs: int | None, timeout: float, keep: bool, state_dir: Path | None) -> None:
    """Run scenarios end to end and compare every hop and call with what they expect.

    Each SCENARIO is a scenario file or the name of one in the scenario folder; none means every
    scenario there. A scenario (workflows/scenarios/*.yaml) sends a CI event as a signed webhook
    to an embedded system running a private copy of the workflows with its changes (a revoked
    or narrowed user, a narrowed agent or hand-off, a lower depth limit, other context rules),
    and states the expected outcome of the webhook, the root grant and every exchange and call.

    Exit status: 0 all expectations hold, 1 some do not, 2 bad scenario file or --junit file.

    \b
    Example:
      infrabot check
      infrabot check alex-lacks-deploy depth-limit --junit check.xml
      infrabot check ./my-scenario.yaml --json
    """
    from infrabot.scenarios import (
        junit_xml,
        load_scenarios,
        render_results,
        results_json,
        run_scenarios,
        select_scenarios,
    )  # deferred: scenarios import the whole system

    settings = load_settings(state_dir)
    try:
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        workflows = load_workflows(settings.workflows_dir, directory)
        paths = select_scenarios(scenarios, folder or settings.workflows_dir / "scenarios")
        files = load_scenarios(paths, directory, workflows)
    except ConfigError as exc:
        raise BadInput(exc.message) from None
    if junit is not None:  # said now, not after every scenario ran
        check_writable(junit, "the JUnit XML", BadInput)
    err = Console(stderr=True)
    workdir = None
    if keep:
        workdir = settings.state_dir / "check" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def progress(result: object) -> None:
        from infrabot.scenarios import ScenarioResult  # deferred: scenarios import the whole system

        assert isinstance(result, ScenarioResult)
        mark = Text("✓ ", style="green") if result.passed else Text("✗ ", style="red")
        err.print(Text("… ", style="dim") + mark + Text(result.name, style="dim"))

    results = run_scenarios(files, settings, directory, workflows, workdir=workdir,
                            jobs=jobs or default_jobs(), timeout=timeout, progress=progress)
    seconds = time.perf_counter() - started
    if junit is not None:
        with output_file(junit, "the JUnit XML", BadInput) as fp:
            fp.write(junit_xml(results, seconds))
        err.print(f"JUnit XML written to {junit}")
    if workdir is not None:
        err.print(f"state kept in {workdir} (one state/ per system)")
    if as_json:
        click.echo(json.dumps(results_json(results, seconds), indent=2))
    else:
        out_console().print(render_results(results, seconds))
    if not all(r.passed for r in results):
        click.get_current_context().exit(1)
