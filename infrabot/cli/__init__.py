"""The ``infrabot`` command line (DESIGN.md section 9).

Every command prints one clear line and exits non-zero on an error; no traceback reaches a user.
"""

from __future__ import annotations

import importlib
import sys

import click

from infrabot.cli._common import CommandError
from orchestrator._log import configure
from orchestrator.config import Settings
from orchestrator.errors import InfraBotError

# Each command's module, imported only when that command runs (or the top-level help lists them
# all): a command pays for its own imports, not for every other command's (the server's web
# stack, the audit trail's, the tracing's), which was most of a short command's run time.
COMMANDS = {
    "audit": "infrabot.cli._audit",
    "check": "infrabot.cli._check",
    "demo": "infrabot.cli._demo",
    "keys": "infrabot.cli._keys",
    "revoke": "infrabot.cli._revoke",
    "run": "infrabot.cli._run",
    "runs": "infrabot.cli._runs",
    "serve": "infrabot.cli._serve",
    "simulate": "infrabot.cli._simulate",
    "token": "infrabot.cli._token",
    "worker": "infrabot.cli._worker",
    "workflows": "infrabot.cli._workflows",
}


class _Group(click.Group):
    """Loads a command when it is asked for (:data:`COMMANDS`); turns the project's errors into
    one line on stderr."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)  # deferred: see COMMANDS
        assert isinstance(command, click.Command)
        return command

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
