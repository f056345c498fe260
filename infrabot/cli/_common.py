"""What every command shares: settings from the environment and one-line errors."""

from __future__ import annotations

import errno
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import click
from pydantic import AliasChoices, ValidationError
from pydantic_settings import SettingsError
from rich.console import Console

from orchestrator.config import Settings
from orchestrator.errors import StoreMissing


class Between(click.FloatRange):
    """click's ``FloatRange``, refusing ``nan`` too: every bound lets it through (a comparison
    with it is false), and an option read as a rate or a timeout would then mean nothing."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


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


StateUse = Literal["create", "existing", "stores", "run_log", "unused"]


def load_settings(state_dir: Path | None = None, *, state: StateUse = "create",
                  **overrides: Any) -> Settings:
    """Settings from ``INFRABOT_*``; ``--state-dir`` and other flags override the environment.

    ``state`` says what the command does with the state directory: ``create`` it (0700) if
    missing (a command that writes there); read an ``existing`` one (a command that only reads:
    a missing one, such as a mistyped ``--state-dir``, is one line, and nothing is created); read
    the authorization server's ``stores``, the audit trail and the client registry (an existing
    directory only when they live there: INFRABOT_AUTH_DATABASE_URL and INFRABOT_DATABASE_URL
    both unset); read the ``run_log`` (an existing directory only when it lives there:
    INFRABOT_DATABASE_URL unset); or leave it ``unused``."""
    try:
        settings = Settings()
        updates = {k: v for k, v in {"state_dir": state_dir, **overrides}.items() if v is not None}
        if updates:  # over the environment; model_fields_set keeps saying what was chosen
            settings = Settings(**updates)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise CommandError(f"bad setting {variable(where)}: {message}" if where
                           else f"bad settings: {message}") from None
    except SettingsError as exc:  # a complex value (a JSON list) that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        raise CommandError(f"bad setting INFRABOT_{field[1].upper() if field else '?'}: "
                           "not valid JSON") from None
    if _needs_dir(settings, state) and not settings.state_dir.is_dir():
        what = ("not a directory" if settings.state_dir.exists() else "no such state directory")
        raise CommandError(f"{what}: {settings.state_dir} (where `infrabot serve` or `infrabot "
                           "demo` ran; --state-dir or INFRABOT_STATE_DIR)")
    if state != "create":
        return settings
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise unusable_state_dir(settings.state_dir, exc) from None
    return settings


def unusable_state_dir(path: Path, exc: OSError) -> CommandError:
    """The state directory ``path`` (or a file in it a command needs) refused by the system."""
    return CommandError(f"cannot use state directory {path}: {exc.strerror or exc}")


def _needs_dir(settings: Settings, state: StateUse) -> bool:
    """Whether ``state`` needs the state directory to exist: a command that only reads it, or
    reads a store no setting moved out of it (the auth database's fall back to the run log's)."""
    if state == "stores":
        return settings.auth_database_url is None and settings.database_url is None
    return state == "existing" or (state == "run_log" and settings.database_url is None)


def variable(field: str) -> str:
    """The environment variable a setting was read from: ``INFRABOT_<FIELD>``, or of a standard
    variable's choices (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ..._ENDPOINT) the one that is set."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if not isinstance(alias, AliasChoices):
        return f"INFRABOT_{field.upper()}"
    names = [name for name in alias.choices if isinstance(name, str) and name.isupper()]
    return next((name for name in names if name in os.environ), names[0])


def check_writable(path: Path, what: str,
                   error: type[click.ClickException] = CommandError) -> None:
    """Fail now, before the work whose result goes to ``path``, unless it can be written: its
    missing folders are made; a path that exists (a file, a link, a pipe, ``/dev/stdout``) must
    be writable, and is not opened (a pipe's reader would see its end); a new file is made and
    removed again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() and not path.exists():
            return  # a link to a file yet to be made: the write makes it, or says why not
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if path.exists():
            if not os.access(path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return
        with path.open("x", encoding="utf-8"):
            pass
        path.unlink()
    except OSError as exc:
        raise error(cannot_write(path, what, exc)) from None


def cannot_write(path: Path, what: str, exc: OSError) -> str:
    """The one line for an output file that cannot be written: what, where, the OS's reason."""
    # mkdir(exist_ok=True) says "File exists" of a file where a folder of the path must be
    reason = os.strerror(errno.ENOTDIR) if isinstance(exc, FileExistsError) else exc.strerror
    return f"cannot write {what} {path}: {reason or exc}"


@contextmanager
def output_file(name: str | Path, what: str,
                error: type[click.ClickException] = CommandError) -> Iterator[IO[str]]:
    """``name`` opened for writing (missing folders made), or stdout for the option value ``-``
    (a string; a :class:`Path` is always a file); failing to open or write a file is one line
    (:func:`cannot_write`), raised as ``error``."""
    if isinstance(name, str) and name == "-":
        with click.open_file(name, "w", encoding="utf-8") as fp:
            yield fp
        return
    path = Path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fp:
            yield fp
    except OSError as exc:
        raise error(cannot_write(path, what, exc)) from None


def run_log_missing(exc: StoreMissing) -> CommandError:
    """A command that follows runs (simulate, run) found no run log: serve makes it."""
    return CommandError(f"{exc.message}; start `infrabot serve` first (it makes the run log), "
                        "or set INFRABOT_DATABASE_URL to the database serve uses")


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
