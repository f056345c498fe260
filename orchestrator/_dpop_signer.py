"""The client side of DPoP (RFC 9449): one key, a fresh proof for every request, and the nonce
each server last handed out.

An agent holds one :class:`DPoPSigner` per agent identity, over the DPoP key in the agent's own
state directory (:func:`dpop_key`). Every token request and every service call the agent makes
with a bound token carries a proof signed with it; a server's ``DPoP-Nonce`` is remembered per
origin and put in the next proof to that origin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.identity import SigningKey, jkt_of, make_proof
from orchestrator.keystore import client_key

DPOP_ALG = "ES256"


def dpop_keys_dir(keys_dir: Path) -> Path:
    """Where agents' DPoP keys live in a state directory's key directory."""
    return keys_dir / "dpop"


def dpop_key(keys_dir: Path, agent: str) -> SigningKey:
    """``agent``'s DPoP key pair in the state directory (0600), made on first use and shared by
    the agent's processes on this host. It is not its client key: it authenticates nobody, and
    the server knows it only as registered (``POST /dpop_keys``)."""
    return client_key(dpop_keys_dir(keys_dir), agent, DPOP_ALG)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class DPoPSigner:
    """Proofs with one key; remembers each server's latest nonce."""

    def __init__(self, key: SigningKey, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.jkt = jkt_of(key.public)
        self._clock = clock
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def proof(self, method: str, url: str, *, access_token: str | None = None) -> str:
        with self._lock:
            nonce = self._nonces.get(_origin(url))
        return make_proof(self.key, method=method, url=url, now=int(self._clock()),
                          access_token=access_token, nonce=nonce)

    def learn(self, url: str, headers: Mapping[str, str]) -> bool:
        """Remember the nonce a response from ``url`` carries; True if it is a new one."""
        nonce = headers.get("dpop-nonce")
        if not nonce or len(nonce) > 64:
            return False
        with self._lock:
            new = self._nonces.get(_origin(url)) != nonce
            self._nonces[_origin(url)] = nonce
        return new

    def headers(self, method: str, url: str, access_token: str) -> dict[str, str]:
        """``Authorization`` and ``DPoP`` for a call with a bound token."""
        return {"Authorization": f"DPoP {access_token}",
                "DPoP": self.proof(method, url, access_token=access_token)}
