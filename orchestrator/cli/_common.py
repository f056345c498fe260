"""What every command shares: settings from the environment and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from orchestrator.config import Settings


class CommandError(click.ClickException):
    """One clear line on stderr and exit code 1."""


def load_settings(state_dir: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``INFRABOT_*``; ``--state-dir`` and other flags override the environment."""
    try:
        settings = Settings()
        updates = {k: v for k, v in {"state_dir": state_dir, **overrides}.items() if v is not None}
        if updates:
            settings = Settings(**{**settings.model_dump(), **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        raise CommandError(f"bad setting INFRABOT_{where.upper()}: {first['msg']}") from None
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
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


def at_running_servers(settings: Settings) -> Settings:
    """``settings`` with the ports of the servers ``infrabot serve`` runs from this state
    directory (it may listen on ports the OS chose), so tokens and assertions made here name
    the issuer and audiences that system uses; unchanged when nothing runs."""
    try:
        urls = endpoints(settings)
    except CommandError:
        return settings
    ports: dict[str, object] = {}
    for name, url in urls.items():
        parts = urlsplit(url)
        if f"{name}_port" in Settings.model_fields and parts.port and parts.hostname:
            ports[f"{name}_port"] = parts.port
            if name == "auth":
                ports["host"] = parts.hostname
    return settings.model_copy(update=ports)


state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="State directory (keys, audit database, endpoints.json); default INFRABOT_STATE_DIR "
         "or .infrabot/.")
