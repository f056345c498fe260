"""The issuer's signing keys on disk, with rotation.

Layout under the key directory::

    keyring.json      {"current": kid, "keys": [{"kid", "alg", "created_at", "retire_after"}]}
    <kid>.pem         PKCS#8 private key, mode 0600

Rotation makes a new key current and keeps every previous public key published until
``retire_after`` (rotation time + the longest token lifetime + leeway), so every token an old key
signed stays verifiable until it has expired. Other processes sharing the directory pick up a
rotation through :meth:`KeyRing.refresh`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.identity import JWKSet, SigningKey, generate_private_key, signing_key_of
from orchestrator.keystore._files import locked, read_private, write_private


class KeyRing:
    def __init__(self, directory: Path, alg: str) -> None:
        self._dir = directory
        self._alg = alg
        self._index_file = str(directory / "keyring.json")
        self._mtime: int | None = None
        self._current: SigningKey | None = None
        self._published: list[SigningKey] = []
        self._jwks = JWKSet({})
        self._retire_times: dict[str, int | None] = {}

    @classmethod
    def open(cls, directory: Path, alg: str, *, now: int) -> KeyRing:
        """Load the key ring, creating the first key if there is none."""
        ring = cls(directory, alg)
        with locked(directory):
            if not ring._index_path.exists():
                ring._add_key(now, retire_previous_after=None)
        ring.refresh(now=now)
        return ring

    @property
    def _index_path(self) -> Path:
        return self._dir / "keyring.json"

    @property
    def current(self) -> SigningKey:
        assert self._current is not None
        return self._current

    def jwks(self) -> JWKSet:
        """The published keys (built once per reload of the ring, not per call)."""
        return self._jwks

    def refresh(self, *, now: int) -> None:
        """Reload from disk if another process rotated; drop keys past their retirement.

        Costs one ``stat`` when nothing changed."""
        try:
            mtime = os.stat(self._index_file).st_mtime_ns
        except OSError as exc:
            raise ConfigError(f"key ring missing in {self._dir}") from exc
        if mtime == self._mtime and all(_alive(k, now) for k in self._retire_times.values()):
            return
        index = self._read_index()
        published: list[SigningKey] = []
        retire: dict[str, int | None] = {}
        current: SigningKey | None = None
        for entry in index["keys"]:
            if not _alive(entry.get("retire_after"), now):
                continue
            key = signing_key_of(read_private(self._dir / f"{entry['kid']}.pem"), entry["alg"])
            published.append(key)
            retire[key.kid] = entry.get("retire_after")
            if key.kid == index["current"]:
                current = key
        if current is None:
            raise ConfigError(f"key ring in {self._dir} names no usable current key")
        self._current, self._published, self._retire_times = current, published, retire
        self._jwks = JWKSet.of([key.public for key in published])
        self._mtime = mtime

    def rotate(self, *, now: int, keep_for_seconds: int) -> SigningKey:
        """Make a new key current; previous keys stay published for ``keep_for_seconds``."""
        with locked(self._dir):
            self._add_key(now, retire_previous_after=now + keep_for_seconds)
        self.refresh(now=now)
        return self.current

    def _read_index(self) -> dict:  # type: ignore[type-arg]
        try:
            index = json.loads(self._index_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self._index_path}: {type(exc).__name__}") from exc
        if not isinstance(index, dict) or not isinstance(index.get("keys"), list):
            raise ConfigError(f"{self._index_path} is not a key ring")
        return index

    def _add_key(self, now: int, *, retire_previous_after: int | None) -> None:
        index = self._read_index() if self._index_path.exists() else {"keys": []}
        key = signing_key_of(generate_private_key(self._alg), self._alg)
        write_private(self._dir / f"{key.kid}.pem", key.private)
        for entry in index["keys"]:
            if entry.get("retire_after") is None and retire_previous_after is not None:
                entry["retire_after"] = retire_previous_after
        index["keys"] = [e for e in index["keys"] if _alive(e.get("retire_after"), now)]
        index["keys"].append(
            {"kid": key.kid, "alg": self._alg, "created_at": now, "retire_after": None}
        )
        index["current"] = key.kid
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._index_path)


def _alive(retire_after: int | None, now: int) -> bool:
    return retire_after is None or now < retire_after
