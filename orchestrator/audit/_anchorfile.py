"""The anchor: the newest checkpoint a writer signed, kept outside the database it vouches for.

Checkpoints live in the database, so someone who can write it can delete every one and rewrite
a trail short enough to look like a fresh tail; nothing left in the database tells the two
apart. So the writer also keeps the newest checkpoint it signs beside the audit key::

    <state_dir>/keys/audit/audit-anchor.json   0600, replaced atomically
    {"type": "infrabot-audit-anchor", "number": 7, "checkpoint": "<the checkpoint's JWS>"}

written after the checkpoint's transaction commits (so it never names one the database lacks)
and never moved back to a lower ``number``. Checkpoints are one chain across the database's
writers, so the newest one pins every checkpoint before it, and each of those its record.

Only the JWS is believed, once ``audit verify`` has checked its signature with the trusted keys
(:mod:`._anchor`); ``number`` serves the writer's own "never backwards" rule. A copy of the file
(or of the bare JWS) carried elsewhere is what ``audit verify --anchor FILE`` takes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.keystore import locked

ANCHOR_FILE = "audit-anchor.json"
ANCHOR_TYPE = "infrabot-audit-anchor"
_MAX_BYTES = 64 * 1024


def write_anchor(directory: Path, jws: str, number: int) -> bool:
    """Make checkpoint ``number`` (``jws``) the anchor in ``directory``, unless the anchor there
    is that checkpoint or a later one already (then False: kept as it is)."""
    path = directory / ANCHOR_FILE
    with locked(directory):
        current = _stored_number(path)
        if current is not None and current >= number:
            return False
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            json.dump({"type": ANCHOR_TYPE, "number": number, "checkpoint": jws}, fp)
            fp.write("\n")
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    return True


def read_anchor(path: Path) -> str:
    """The checkpoint JWS of an anchor file (or of a file holding just the JWS);
    :class:`ConfigError` naming the file if it is neither. Its signature is not checked here."""
    try:
        with open(path, "rb") as fp:
            data = fp.read(_MAX_BYTES + 1)
        text = data.decode("utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"no audit anchor at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read audit anchor {path}: {type(exc).__name__}") from None
    if len(data) > _MAX_BYTES:
        raise ConfigError(f"{path} is not an audit anchor: larger than {_MAX_BYTES} bytes")
    jws: object = text
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            raise ConfigError(f"{path} is not an audit anchor: not JSON") from None
        jws = document.get("checkpoint") if isinstance(document, dict) else None
    if not isinstance(jws, str) or jws.count(".") != 2 or any(c.isspace() for c in jws):
        raise ConfigError(f"{path} is not an audit anchor (an {ANCHOR_FILE} or a checkpoint's "
                          "compact JWS)")
    return jws


def _stored_number(path: Path) -> int | None:
    """The number the anchor at ``path`` names; None if there is none, or none readable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    number = document.get("number") if isinstance(document, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None
