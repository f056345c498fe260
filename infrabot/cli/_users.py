"""One reading of a user on the command line, for every command that takes one.

A bare login (``sam``) and the identity (``user:sam``) mean the same user everywhere. A user the
directory does not know is refused with one line that lists the users it does know, so a typo
never "succeeds" by matching nothing.
"""

from __future__ import annotations

from infrabot.cli._common import CommandError
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory
from orchestrator.workflows import load_directory

USER_PREFIX = "user:"


def user_id(value: str) -> str:
    """``sam`` and ``user:sam`` both as ``user:sam``."""
    value = value.strip()
    return value if value.startswith(USER_PREFIX) else f"{USER_PREFIX}{value}"


def known_user(directory: Directory, value: str) -> str:
    """The directory's identity for ``value`` (a login or ``user:<login>``), or one line."""
    wanted = user_id(value)
    if wanted in directory.users:
        return wanted
    known = ", ".join(sorted(directory.users)) or "none"
    raise CommandError(f"{wanted} is not a user in the directory (unknown_user); "
                       f"known users: {known}")


def directory_of(settings: Settings) -> Directory:
    try:
        return load_directory(settings.workflows_dir / "directory.yaml")
    except ConfigError as exc:
        raise CommandError(exc.message) from None


def resolve_user(settings: Settings, value: str) -> str:
    """:func:`known_user` against the directory these settings name."""
    return known_user(directory_of(settings), value)
