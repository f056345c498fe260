"""``infrabot worker``: a Celery worker process for the agent queues (distributed mode)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from infrabot.cli._common import CommandError, endpoints, load_settings, state_dir_option
from orchestrator._log import configure
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError
from orchestrator.identity import Directory, SigningKey
from orchestrator.keystore import client_keys_dir, load_client_key
from orchestrator.runs import RunStore
from orchestrator.workflows import load_directory

# Settings that say where serve listens: set, they stand in for a missing endpoints.json (a
# worker then reaches INFRABOT_HOST on the INFRABOT_*_PORT ports, docs/deploy.md).
ENDPOINT_SETTINGS = frozenset({"host", "auth_port", "datadog_port", "github_port", "aws_port",
                               "pagerduty_port", "service_ports"})


def agent_keys(settings: Settings, directory: Directory,
               queues: list[str]) -> dict[str, SigningKey]:
    """The keys of the agents whose queues this worker serves, and no other: from the state
    directory, where `infrabot keys init` made them. A missing one is one line naming the agent
    and the command that makes it."""
    where = client_keys_dir(settings.keys_dir)
    keys: dict[str, SigningKey] = {}
    for queue in queues:
        agent = directory.agent_of_queue(queue)
        assert agent is not None  # the queues were checked against the directory
        key = load_client_key(where, agent)
        if key is None:
            raise CommandError(
                f"no key for {agent} in {where}: create it with `infrabot keys init {agent} "
                f"--state-dir {settings.state_dir}`, then register its public key at the "
                f"authorization server (`infrabot keys register {agent} --jwks FILE`)")
        keys[agent] = key
    return keys


@click.command("worker")
@click.option("--queues", "-Q", default=None,
              help="Comma-separated agent queues to consume (default: every agent's queue in "
                   "the directory).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=1, show_default=True,
              help="How many hops this worker runs at once (pool processes or threads).")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork",
              show_default=True, help="Celery's execution pool: processes, one thread, or threads.")
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                              case_sensitive=False),
              default="WARNING", show_default=True,
              help="Celery's own log level (the agents log at INFRABOT_LOG_LEVEL).")
@click.option("--hostname", "-n", default=None,
              help="Node name; default infrabot-<pid>@<host>, unique per process.")
@state_dir_option
def worker(queues: str | None, concurrency: int, pool: str, loglevel: str, hostname: str | None,
           state_dir: Path | None) -> None:
    """Run agents from the broker named by INFRABOT_BROKER_URL (RabbitMQ or Redis).

    Reads the servers' URLs from DIR/endpoints.json, written by `infrabot serve` (copy it
    from serve's state directory), or from INFRABOT_HOST and the INFRABOT_*_PORT settings
    when set. Writes to serve's run log: INFRABOT_DATABASE_URL, or DIR/runs.sqlite3 when DIR
    is serve's own state directory. It needs neither the authorization server's database
    nor the registry's Redis (docs/deploy.md). Signs only as the agents of its queues, with
    their keys from DIR (`infrabot keys init`). Without any of these it refuses to start: one
    line, exit status 1. A broker that restarts or is down does not stop the worker: it reconnects
    and goes on consuming.

    \b
    Example:
      export INFRABOT_BROKER_URL=amqp://guest:guest@127.0.0.1:5672//
      infrabot keys init agent:argocd --state-dir /tmp/ib > argocd.jwks
      infrabot keys register agent:argocd --jwks argocd.jwks --state-dir /tmp/ib
      infrabot worker -Q argocd --state-dir /tmp/ib     # serve's state directory
    """
    settings = load_settings(state_dir)
    if settings.broker_url.startswith("memory://"):
        raise CommandError("a worker process needs a shared broker: set INFRABOT_BROKER_URL "
                           "(amqp://... or redis://...); the embedded default runs its "
                           "worker inside `infrabot demo`")
    try:
        directory = load_directory(settings.workflows_dir / "directory.yaml")
    except InfraBotError as exc:
        raise CommandError(exc.message) from None
    declared = sorted(directory.queues().values())
    chosen = [q.strip() for q in (queues or ",".join(declared)).split(",") if q.strip()]
    unknown = sorted(set(chosen) - set(declared))
    if unknown or not chosen:
        raise CommandError(f"unknown queue {unknown[0] if unknown else '(none)'}; "
                           f"the directory's agents use {', '.join(declared)}")
    keys = agent_keys(settings, directory, chosen)
    _check_run_log(settings)
    _check_endpoints(settings)
    # Deferred: Celery and the agents are heavy to import
    from agents._runtime import install_agent_keys

    # Deferred: Celery and the agents are heavy to import
    from infrabot.celery_app import create_celery

    # Deferred: OpenTelemetry and its instrumentations are heavy to import
    from orchestrator.tracing import start_tracing

    install_agent_keys(keys)  # before the pool forks: children inherit them, never re-read
    configure(settings.log_level)
    app = create_celery(settings, directory)
    with start_tracing(settings, "infrabot-worker"):  # the hops' spans, in each pool process
        app.worker_main(["worker", "--queues", ",".join(chosen), "--concurrency",
                         str(concurrency), "--pool", pool, "--loglevel", loglevel,
                         "--hostname", hostname or f"infrabot-{os.getpid()}@%h",
                         "--without-gossip", "--without-mingle", "--without-heartbeat"])


def serves_own(settings: Settings) -> bool:
    """Whether the state directory is serve's own: it holds the authorization server's signing
    key ring, which only serve makes and a worker host never holds (docs/deploy.md). There a
    worker shares serve's run log file and reads its endpoints, even while serve restarts."""
    return (settings.keys_dir / "signing" / "keyring.json").exists()


def _check_run_log(settings: Settings) -> None:
    """One line now, not a failure in every task later, if the run log cannot be serve's (no
    INFRABOT_DATABASE_URL, and a state directory not serve's without a run log: this worker
    would make one of its own that serve never reads, and every hop would fail
    ``unknown_run``) or cannot be opened (an unreachable database); closed again before the
    pool's processes fork."""
    runs = settings.runs_target
    if settings.database_url is None and isinstance(runs, Path) and not runs.exists() \
            and not serves_own(settings):
        raise CommandError(
            f"no run log {runs}: set INFRABOT_DATABASE_URL to the database `infrabot serve` "
            "uses, or give this worker serve's state directory (a run log of the worker's own "
            "never sees serve's runs)")
    try:
        RunStore(settings.runs_target).close()
    except InfraBotError as exc:
        raise CommandError(exc.message) from None


def _check_endpoints(settings: Settings) -> None:
    """One line now, rather than hops sent to the default ports 8700-8705 where no server may
    listen: DIR/endpoints.json must be there and name an auth server, unless INFRABOT_HOST or
    a port setting says where serve listens, or DIR is serve's own (serve removes the file
    while it is down: a worker started then sends to the configured ports until the file
    appears, then follows it, agents/_endpoints.py)."""
    path = settings.endpoints_file
    if path.exists():
        endpoints(settings)  # a damaged one: one line naming it
    elif not ENDPOINT_SETTINGS & settings.model_fields_set and not serves_own(settings):
        raise CommandError(
            f"no {path}: copy it from serve's state directory (`infrabot serve` writes it once "
            "ready), or set INFRABOT_HOST (and the INFRABOT_*_PORT settings) to where serve "
            "listens")
