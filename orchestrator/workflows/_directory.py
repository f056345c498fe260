"""The directory file, ``workflows/directory.yaml``: read and validated as the trust core's
:class:`~orchestrator.identity.Directory`, an error naming the file and line."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from orchestrator._yamlfile import line_of, load_model, load_yaml
from orchestrator.errors import ConfigError
from orchestrator.identity import Directory, DirectoryEntryError


def load_directory(path: Path) -> Directory:
    """Load and validate a directory file; errors name the file and line."""
    try:
        return load_model(path, Directory)
    except ConfigError as exc:
        cause = exc.__cause__
        error = (cause.errors()[0].get("ctx", {}).get("error")
                 if isinstance(cause, ValidationError) else None)
        if not isinstance(error, DirectoryEntryError):
            raise
        _, lines = load_yaml(path)
        where = ".".join(str(part) for part in error.loc)
        raise ConfigError(f"{path}:{line_of(lines, error.loc)}: {where}: {error}") from cause
