"""What every command shares: settings from the environment and one-line errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console

from orchestrator.config import Settings

PIPE_WIDTH = 160  # the width of tables written to a pipe or a file when COLUMNS is unset


class CommandError(click.ClickException):
    """One clear line on stderr and exit code 1."""


def out_console() -> Console:
    """Standard output for people: as wide as the terminal (or ``COLUMNS``), never wider; into
    a pipe or a file, ``COLUMNS`` or ``PIPE_WIDTH``. Renderers fit whatever width this is."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(width=PIPE_WIDTH)


StateUse = Literal["create", "existing", "stores", "unused"]


def load_settings(state_dir: Path | None = None, *, state: StateUse = "create",
                  **overrides: Any) -> Settings:
    """Settings from ``INFRABOT_*``; ``--state-dir`` and other flags override the environment.

    ``state`` says what the command does with the state directory: ``create`` it (0700) if
    missing (a command that writes there); read an ``existing`` one (a command that only reads:
    a missing one, such as a mistyped ``--state-dir``, is one line, and nothing is created); read
    the ``stores`` (an existing directory only when they live there: INFRABOT_DATABASE_URL
    unset); or leave it ``unused``."""
    try:
        settings = Settings()
        updates = {k: v for k, v in {"state_dir": state_dir, **overrides}.items() if v is not None}
        if updates:  # over the environment; model_fields_set keeps saying what was chosen
            settings = Settings(**updates)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise CommandError(f"bad setting INFRABOT_{where.upper()}: {message}" if where
                           else f"bad settings: {message}") from None
    except SettingsError as exc:  # a complex value (a JSON list) that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        raise CommandError(f"bad setting INFRABOT_{field[1].upper() if field else '?'}: "
                           "not valid JSON") from None
    needs_dir = state == "existing" or (state == "stores" and settings.database_url is None)
    if needs_dir and not settings.state_dir.is_dir():
        raise CommandError(f"no such state directory: {settings.state_dir} (where `infrabot "
                           "serve` or `infrabot demo` ran; --state-dir or INFRABOT_STATE_DIR)")
    if state != "create":
        return settings
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CommandError(f"cannot use state directory {settings.state_dir}: "
                           f"{exc.strerror or exc}") from None
    return settings


def endpoints(settings: Settings) -> dict[str, str]:
    """The running servers' URLs from ``<state_dir>/endpoints.json``, written by ``serve``."""
    path = settings.endpoints_file
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CommandError(f"no running system: {path} is missing (start `infrabot serve`)") \
            from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or "auth" not in data:
        raise CommandError(f"{path} does not name an auth server")
    return {str(k): str(v) for k, v in data.items()}


state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="State directory (keys, audit database, endpoints.json); default INFRABOT_STATE_DIR "
         "or .infrabot/.")
