"""Private keys in files: written atomically and owner-only, read back, and an inter-process
lock on a key directory. Every key file of the project goes through here."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from orchestrator.errors import ConfigError
from orchestrator.identity import PrivateKey


def _pem(private: PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, private: PrivateKey) -> None:
    """Write a PEM private key atomically, readable by the owner only: whatever a leftover
    ``<name>.tmp`` was (another mode, a symbolic link), it is replaced, never written through,
    and the key is mode 0600 before a byte of it is written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fp:
        os.fchmod(fp.fileno(), 0o600)
        fp.write(_pem(private))
    os.replace(tmp, path)


def read_private(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load private key {path}: {type(exc).__name__}") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                            ed25519.Ed25519PrivateKey)):
        raise ConfigError(f"{path}: unsupported key type")
    return key


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive inter-process lock on a key directory."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a+") as fp:
        fcntl.flock(fp, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fp, fcntl.LOCK_UN)
