"""``infrabot demo``: the whole chain on the embedded default, then attacks, then the baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from infrabot.cli._common import (
    CommandError,
    cannot_write,
    check_writable,
    load_settings,
    out_console,
    state_dir_option,
)
from orchestrator._log import configure


@click.command("demo")
@click.option("--json", "as_json", is_flag=True,
              help="Print a machine-readable summary (decoded claims, never raw tokens).")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write a self-contained HTML report to this file.")
@click.option("--no-attacks", is_flag=True, help="Skip the attack round.")
@click.option("--no-baseline", is_flag=True, help="Skip the static-token comparison.")
@state_dir_option
def demo(as_json: bool, report: Path | None, no_attacks: bool, no_baseline: bool,
         state_dir: Path | None) -> None:
    """Run sam's deploy of service-x to prod: InfraBot, then ArgoCD and the scanner, then
    CleanupAgent.

    Embedded: the authorization server, the four services, the webhook receiver, an in-memory
    broker and a worker, all in this process on free loopback ports. No Redis needed.

    \b
    Example:
      infrabot demo
      infrabot demo --json > demo.json
    """
    from infrabot.demo import render_demo, run_demo  # deferred: the demo imports the whole system

    settings = load_settings(state_dir)
    if "log_level" not in settings.model_fields_set:
        configure("WARNING")  # the story is the output; INFRABOT_LOG_LEVEL=INFO shows the logs
    if report is not None:  # fail before the run, not after it
        check_writable(report, "the report")
    err = Console(stderr=True)
    result = run_demo(settings, attacks=not no_attacks, static=not no_baseline,
                      progress=lambda step: err.print(f"[dim]… {step}[/dim]"))
    if report is not None:
        # Deferred: the demo imports the whole system
        from infrabot.demo._report import write_report

        try:
            write_report(result, report)
        except OSError as exc:
            raise CommandError(cannot_write(report, "the report", exc)) from None
        click.echo(f"report written to {report}", err=True)  # unwrapped, no markup
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        render_demo(result, out_console())
    failed = [a.name for a in result.attacks if not a.refused]
    if result.run.status != "succeeded" or failed or not result.audit_intact:
        raise CommandError(f"demo did not go as designed: run {result.run.status}"
                           + (f"; not refused: {', '.join(failed)}" if failed else ""))
    sys.stdout.flush()
