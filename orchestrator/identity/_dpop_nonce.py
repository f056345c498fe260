"""Server-provided DPoP nonces (RFC 9449 section 8), without state.

A nonce is the time step it was issued in and a MAC of that step under the server's secret. The
server hands out the nonce of the current step (``DPoP-Nonce`` on every token response and on a
``use_dpop_nonce`` refusal) and accepts a proof whose nonce is its own and at most ``lifetime``
seconds old. A proof made in advance (by a thief who once held the key, or by a client that
pre-signs) therefore expires with the nonce, whatever ``iat`` it claims. No nonce is stored, so
nothing grows with traffic; the secret lives in the server's memory only, and a restart only
makes each client retry once with the new nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

_MAC_BYTES = 16


@dataclass(frozen=True)
class NonceIssuer:
    """Issues and checks nonces; ``step`` seconds share one nonce (clients can reuse it)."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    lifetime: int = 120
    step: int = 30

    def current(self, *, now: int) -> str:
        """The nonce to hand out at ``now``."""
        return self._nonce(now // self.step)

    def accepts(self, nonce: object, *, now: int) -> bool:
        """Whether ``nonce`` is one of ours, issued at most ``lifetime`` seconds before
        ``now`` (and not in a step still to come)."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return False
        if len(raw) != 8 + _MAC_BYTES:
            return False
        index = int.from_bytes(raw[:8], "big")
        if not hmac.compare_digest(self._nonce(index), nonce):
            return False
        current = now // self.step
        return index <= current and (current - index) * self.step <= self.lifetime

    def _nonce(self, index: int) -> str:
        stamp = index.to_bytes(8, "big")
        mac = hmac.new(self.secret, stamp, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(stamp + mac).rstrip(b"=").decode("ascii")
