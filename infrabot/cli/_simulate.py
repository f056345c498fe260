"""``infrabot simulate``: CI events against a running system (``infrabot serve``).

One event, the events of a scenario file, or a bounded load run with a mix of users, services,
environments and bad events. Reads the webhook receiver's URL from DIR/endpoints.json and the
signing secret from INFRABOT_WEBHOOK_SECRET, else from DIR/webhook_secret (which ``serve``
writes when that is unset); run results come from the run log (INFRABOT_DATABASE_URL, else
DIR/runs.sqlite3), opened read-only: simulate never writes it, so a reader's grants do
(docs/deploy.md, the ci host), and a run log serve has not made yet is one line saying so.

Every event is judged against what was expected of it: by default an accepted event whose run
succeeds; a scenario file's ``expect:`` says otherwise; a load run's mix expects refusals of its
bad events and denials by policy. Anything else is exit status 1 with one line saying what.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from infrabot.cli._common import (
    Between,
    CommandError,
    endpoints,
    load_settings,
    run_log_missing,
    state_dir_option,
)
from infrabot.cli._simulate_events import LOAD_MIX, MAX_EVENTS, Expected, events_of
from infrabot.cli._simulate_report import command, done, print_report
from infrabot.cli._users import resolve_user
from orchestrator._words import plural
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError, StoreMissing, TransientError

if TYPE_CHECKING:  # orchestrator.ci imports the web stack: slow, so only where it is used
    from orchestrator.ci._load import EventSpec, LoadReport

PICKUP_HINT_SECONDS = 5.0  # no run picked up by an agent this long after the first: say so
_EXIT = """\b
Exit codes:
  0  every event went as expected: {zero}
  1  {one}
     or an event was lost, a run did not finish before --timeout, or the
     system could not be used (one Error: line)
  2  bad usage (an unknown option, a value out of range, a missing file)"""
EXIT_CODES = _EXIT.format(
    zero="accepted, and its run succeeded\n     (in a scenario file: as its expect: says)",
    one="an event was refused at the receiver, or a run ended denied, failed\n"
        "     or expired, and that was not expected;")
LOAD_EXIT_CODES = _EXIT.format(
    zero="none lost, every run finished,\n     none failed or expired",
    one="a run failed or expired (the mix expects its bad events to be refused\n"
        "     and some runs to be denied);")

@click.group("simulate", epilog=EXIT_CODES)
def simulate() -> None:
    """Send CI events to a running system: one, a scenario file, or a load run.

    \b
    Example:
      infrabot simulate deploy --user sam --json
      infrabot simulate load --count 200 --rate 20
    """


def _send(settings: Settings, events: list[EventSpec], *, rate: float, timeout: float,
          as_json: bool, state_dir: Path | None) -> LoadReport:
    # Deferred: the load driver imports the web stack
    from orchestrator.ci._load import Waiting, run_load

    # Deferred: orchestrator.ci imports the web stack
    from orchestrator.ci._secret import sender_secret

    urls = _endpoints(settings)
    if "webhooks" not in urls:
        raise CommandError(f"{settings.endpoints_file} names no webhook receiver")
    secret = sender_secret(settings)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    err = Console(stderr=True)  # bars for a terminal; not in a log or a script's capture
    with Progress(*columns, console=err, disable=as_json or not err.is_terminal) as progress:
        sent = progress.add_task("sent", total=len(events))
        done = progress.add_task("runs finished", total=len(events))
        waiting = Waiting(PICKUP_HINT_SECONDS, lambda ids: progress.console.print(
            _no_worker(settings, ids, state_dir), markup=False, highlight=False,
            soft_wrap=True))
        try:
            report = run_load(urls["webhooks"], secret, settings.runs_target,
                              events, rate=rate, timeout=timeout,
                              on_sent=lambda n: progress.update(sent, completed=n),
                              on_done=lambda n: progress.update(done, completed=n),
                              waiting=waiting)
        except TransientError as exc:  # the receiver never answered the first event
            raise CommandError(f"cannot reach the webhook receiver at {urls['webhooks']}: "
                               f"{exc.message} (is `infrabot serve` running?)") from None
        except StoreMissing as exc:  # serve has not made the run log yet: nothing was sent
            raise run_log_missing(exc) from None
        except InfraBotError as exc:  # the run log cannot be opened
            raise CommandError(exc.message) from None
    return report


def _endpoints(settings: Settings) -> dict[str, str]:
    """``endpoints.json``; with a shared database and no state directory of the servers', the
    configured receiver (``INFRABOT_HOST``, ``INFRABOT_WEBHOOKS_PORT``)."""
    if settings.database_url is not None and not settings.endpoints_file.exists():
        return {"webhooks": f"http://{settings.host}:{settings.webhooks_port}"}
    return endpoints(settings)


def _no_worker(settings: Settings, run_ids: list[str], state_dir: Path | None) -> str:
    """The hint when no agent has picked up any run: in distributed mode nothing consumes the
    broker's queues until an `infrabot worker` runs (the broker's URL is not shown: it may
    hold a password)."""
    which = (f"run {run_ids[0]}" if len(run_ids) == 1
             else f"any of {plural(len(run_ids), 'waiting run')}")
    return (f"no worker has picked up {which} after {PICKUP_HINT_SECONDS:g} s (no agent hop has "
            f"started; the broker is {settings.broker_kind}): start one with "
            f"`{command('worker', state_dir=state_dir)}`; still waiting")



@simulate.command("deploy", epilog=EXIT_CODES)
@click.option("--user", required=True,
              help="Who deploys: sam or user:sam (the directory must know the user).")
@click.option("--service", default="service-x", show_default=True,
              help="The service deployed.")
@click.option("--env", "environment", default="prod", show_default=True,
              help="The environment deployed to.")
@click.option("--commit", default="9f2c1e7", show_default=True, help="The commit deployed.")
@click.option("--trigger", type=click.Choice(["ci_pipeline", "manual"]), default="ci_pipeline",
              show_default=True, help="What started the deployment.")
@click.option("--pr", type=click.IntRange(1), default=124, show_default=True,
              help="The pull request the commit came from.")
@click.option("--task", default="deploy", show_default=True,
              help="GitHub deployment task; rollback starts the rollback workflow.")
@click.option("--timeout", type=Between(1, 600), default=30, show_default=True,
              help="Seconds to wait for the run to end.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (the summary, and the event under `events`).")
@state_dir_option
def deploy(user: str, service: str, environment: str, commit: str, trigger: str, pr: int,
           task: str, timeout: float, as_json: bool, state_dir: Path | None) -> None:
    """Send one signed deployment event and wait for its run: prints the run id, its final
    status and reason, and the command that shows it hop by hop.

    \b
    Example:
      infrabot simulate deploy --user sam --service service-x --env prod
    """
    from orchestrator.ci._load import EventSpec  # deferred: the load driver imports the web stack

    settings = load_settings(state_dir, state="run_log")
    login = resolve_user(settings, user).removeprefix("user:")
    spec = EventSpec(login, service, environment, trigger, commit, pr, task=task)
    report = _send(settings, [spec], rate=0, timeout=timeout, as_json=as_json,
                   state_dir=state_dir)
    print_report(report, as_json, state_dir)
    done(report, [Expected()])


@simulate.command("scenario", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--rate", type=Between(0.1, 1000), default=5, show_default=True,
              help="Events per second.")
@click.option("--timeout", type=Between(1, 3600), default=60, show_default=True,
              help="Seconds to wait, from the first event, for every run to end.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@state_dir_option
def scenario(file: Path, rate: float, timeout: float, as_json: bool,
             state_dir: Path | None) -> None:
    """Send the events a YAML file lists (`event:` or `events:` with user, service, env,
    trigger, commit, pr, task, count) and judge each by the file's `expect:`.

    `expect:` (for the whole file, or per event) takes `webhook: {status, reason}`, `status`
    (the run's terminal status), `reason` (a substring of the run's reason) and `workflow`;
    without it every event must be accepted and its run succeed. `expect.root`, `hops` and
    `never_granted` are checked only by `infrabot check`, and a file with `changes:` or
    `workflow:` (a private copy of the workflows) is refused: run it with `infrabot check`.

    \b
    Example:
      infrabot simulate scenario workflows/scenarios/happy-path.yaml
    """
    events, expected = events_of(file)
    settings = load_settings(state_dir, state="run_log")
    report = _send(settings, events, rate=rate, timeout=timeout, as_json=as_json,
                   state_dir=state_dir)
    print_report(report, as_json, state_dir)
    done(report, expected)


@simulate.command("load", epilog=LOAD_EXIT_CODES)
@click.option("--count", type=click.IntRange(1, MAX_EVENTS), default=100, show_default=True,
              help="How many events to send.")
@click.option("--rate", type=Between(0.1, 1000), default=20, show_default=True,
              help="Events per second.")
@click.option("--bad-ratio", type=Between(0, 1), default=0.05, show_default=True,
              help="Share of deliberately bad events (unsigned, mis-signed, replayed, "
                   "malformed).")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed of the random mix: the same seed sends the same events.")
@click.option("--timeout", type=Between(1, 3600), default=300, show_default=True,
              help="Seconds, from the first event, to send and wait for every run to end.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as JSON (every event's outcome under `events`).")
@state_dir_option
def load(count: int, rate: float, bad_ratio: float, seed: int, timeout: float, as_json: bool,
         state_dir: Path | None) -> None:
    """A load run: COUNT events at RATE per second with a mix of users, services,
    environments and bad events; then a summary.

    \b
    Example:
      infrabot simulate load --count 200 --rate 20
    """
    # Deferred: the load driver imports the web stack
    from orchestrator.ci._load import mixed_events

    settings = load_settings(state_dir, state="run_log")
    report = _send(settings, mixed_events(count, bad_ratio=bad_ratio, seed=seed), rate=rate,
                   timeout=timeout, as_json=as_json, state_dir=state_dir)
    print_report(report, as_json, state_dir)
    done(report, [LOAD_MIX] * len(report.outcomes))
