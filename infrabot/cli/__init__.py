"""The ``infrabot`` command line (DESIGN.md section 9).

Every command prints one clear line and exits non-zero on an error; no traceback reaches a user.
"""

from __future__ import annotations

import sys

import click

from infrabot.cli._audit import audit
from infrabot.cli._check import check
from infrabot.cli._common import CommandError
from infrabot.cli._demo import demo
from infrabot.cli._keys import keys
from infrabot.cli._revoke import revoke
from infrabot.cli._run import run
from infrabot.cli._runs import runs
from infrabot.cli._serve import serve
from infrabot.cli._simulate import simulate
from infrabot.cli._token import token
from infrabot.cli._worker import worker
from infrabot.cli._workflows import workflows
from orchestrator._log import configure
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError


class _Group(click.Group):
    """Turns the project's errors into one line on stderr."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InfraBotError as exc:
            code = getattr(exc, "code", None)
            label = f"{code} ({exc.reason})" if code else exc.reason
            raise CommandError(f"{label}: {exc.message}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="infrabot-chains")
def cli() -> None:
    """InfraBot Chains: on-behalf-of delegation for AI agents, simulated end to end.

    \b
    Example:
      infrabot demo
    """
    configure(_log_level())


for command in (demo, serve, worker, simulate, check, workflows, token, revoke, runs, audit,
                keys, run):
    cli.add_command(command)


def _log_level() -> str:
    """Structured logs go to stderr at INFRABOT_LOG_LEVEL (stdout stays for results)."""
    try:
        return Settings().log_level
    except ValueError:
        return "INFO"  # a bad setting is reported by the command that loads it


def main() -> None:
    try:
        cli.main(prog_name="infrabot")
    except KeyboardInterrupt:
        sys.exit(130)
