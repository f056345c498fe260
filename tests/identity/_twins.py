"""ES256 signature twins: ``(r, s)`` and ``(r, n - s)`` both verify under the same key."""

from __future__ import annotations

import base64

from orchestrator.identity._jws import P256_ORDER


def twin(token: str, *, high: bool = True) -> str:
    """The ES256 token with its signature in its high-S form (``high``) or its low-S one."""
    head, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    s = int.from_bytes(raw[32:], "big")
    if (s > P256_ORDER // 2) != high:
        s = P256_ORDER - s
    encoded = base64.urlsafe_b64encode(raw[:32] + s.to_bytes(32, "big")).rstrip(b"=").decode()
    return f"{head}.{payload}.{encoded}"
