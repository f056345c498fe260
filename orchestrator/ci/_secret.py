"""Where the webhook secret comes from: the setting, else the state directory's own file.

There is no default secret. ``infrabot serve`` with ``INFRABOT_WEBHOOK_SECRET`` unset calls
:func:`ensure_secret_file`: the first start writes a random secret to ``<state_dir>/webhook_secret``
(mode 0600, linked into place whole, so two starts cannot write two secrets), later starts reuse it.
The senders (``infrabot simulate``, a CI system configured by hand) read the same file
(:func:`sender_secret`). A process that runs the whole system in itself and is given no secret
(the demo, ``infrabot check``, tests) gets a fresh random one that lives as long as it does
(:func:`with_webhook_secret`). A file that others may read, or that holds a refused secret, is
refused with one line; nothing is ever logged but its path.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

from pydantic import SecretStr

from orchestrator._webhook_secret import check_webhook_secret
from orchestrator.config import Settings
from orchestrator.errors import ConfigError

SECRET_FILE = "webhook_secret"
ENV_NAME = "INFRABOT_WEBHOOK_SECRET"


def secret_path(settings: Settings) -> Path:
    return settings.state_dir / SECRET_FILE


def generate_secret() -> str:
    """A fresh random secret: 256 bits, hex."""
    return secrets.token_hex(32)


def with_webhook_secret(settings: Settings) -> Settings:
    """``settings`` unchanged when they name a secret, else with a fresh random one."""
    if settings.webhook_secret is not None:
        return settings
    return settings.model_copy(update={"webhook_secret": SecretStr(generate_secret())})


def webhook_key(settings: Settings) -> bytes:
    """The configured secret as the HMAC key; refuses settings that name none."""
    if settings.webhook_secret is None:
        raise ConfigError(f"no webhook secret: set {ENV_NAME}")
    return settings.webhook_secret.get_secret_value().encode()


def ensure_secret_file(settings: Settings) -> tuple[Settings, Path | None, bool]:
    """For ``serve``: the settings with the secret to verify against, the file it came from
    (None when it is the setting) and whether this call created that file."""
    if settings.webhook_secret is not None:
        return settings, None, False
    path = secret_path(settings)
    created = _create(path)
    secret = _read(path)
    return settings.model_copy(update={"webhook_secret": SecretStr(secret)}), path, created


def sender_secret(settings: Settings) -> bytes:
    """For a sender (``simulate``): the setting, else the file ``serve`` wrote."""
    if settings.webhook_secret is not None:
        return webhook_key(settings)
    path = secret_path(settings)
    if not path.exists():
        raise ConfigError(f"no webhook secret: set {ENV_NAME}, or start `infrabot serve` with "
                          f"this state directory once to create {path}")
    return _read(path).encode()


def _create(path: Path) -> bool:
    """Write a new secret to ``path`` unless one is there; True if this call wrote it. The
    secret is written in full to a private temporary file first and then linked into place,
    which fails if the name exists: a concurrent start reads a whole secret or none."""
    if path.exists():
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(prefix=f".{SECRET_FILE}-", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create the webhook secret {path}: {exc.strerror or exc}") \
            from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            handle.write(generate_secret() + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(f"cannot create the webhook secret {path}: {exc.strerror or exc}") \
            from None
    finally:
        os.unlink(temporary)
    return True


def _read(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"the webhook secret {path} is not a regular file")
        if mode & 0o077:
            raise ConfigError(f"the webhook secret {path} may be read by others (mode "
                              f"{stat.S_IMODE(mode):04o}); chmod 600 it")
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the webhook secret {path}: "
                          f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    try:
        check_webhook_secret(value)
    except ValueError as exc:
        raise ConfigError(f"the webhook secret in {path} {exc}") from None
    return value
