"""``Idempotency-Key`` on mutating routes: a retried request replays the first answer.

Keys are scoped per service (one cache per app) and per principal (the token's ``sub``). The
first request under a key runs and, when it succeeds (2xx), its status and body are kept; the
same key with the same request (method, path, query and canonical JSON body) replays them,
changing nothing; the same key with a different request is 422 ``idempotency_key_reused``.
Refused or failed requests are not kept, so a corrected retry may reuse the key. Requests under
keys are serialised per service, so two concurrent retries cannot both run.

What is kept is bounded twice: an answer replays for :data:`TTL_SECONDS` (24 hours, Stripe's
window) and then expires, and at most :data:`MAX_KEYS` answers are kept per service, the oldest
dropped first, so a long run of workflows does not grow the process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response

from mock_services._bearer import ApiError

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
TTL_SECONDS = 24 * 3600
MAX_KEYS = 2_000  # about 1 KB each (the answer's body, its fingerprint and the key)


@dataclass(frozen=True)
class _Kept:
    fingerprint: str
    status: int
    body: bytes
    media_type: str | None
    expires_at: float


def fingerprint(method: str, path: str, query: str, body: bytes, parsed: object) -> str:
    """What makes two requests the same: JSON bodies compare by content, not by spelling."""
    canonical = (json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
                 if parsed is not None else body)
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ApiError(400, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-255 visible ASCII characters")
    return key


class IdempotencyCache:
    def __init__(self, clock: Callable[[], float], *, ttl_seconds: float = TTL_SECONDS,
                 max_entries: int = MAX_KEYS) -> None:
        self._clock = clock
        self._ttl = ttl_seconds
        self._max = max_entries
        self._kept: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._lock: asyncio.Lock | None = None

    async def run(self, principal: str, key: str, print_: str,
                  produce: Callable[[], Awaitable[Response]]) -> tuple[Response, bool]:
        """The response for this request under ``key`` and whether it is a replay."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            self._expire(now)
            kept = self._kept.get((principal, key))
            if kept is not None and kept.expires_at > now:
                if kept.fingerprint != print_:
                    raise ApiError(422, "idempotency_key_reused",
                                   "this Idempotency-Key was used for a different request")
                return _replay(kept), True
            response = await produce()
            body = getattr(response, "body", None)
            if 200 <= response.status_code < 300 and isinstance(body, bytes):
                self._keep((principal, key), _Kept(print_, response.status_code, body,
                                                   response.media_type, now + self._ttl))
            return response, False

    def __len__(self) -> int:
        """How many answers are kept."""
        return len(self._kept)

    def _keep(self, key: tuple[str, str], kept: _Kept) -> None:
        self._kept[key] = kept
        self._kept.move_to_end(key)
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    def _expire(self, now: float) -> None:
        """Drop the expired answers. Kept in the order they expire (one TTL, a clock that does
        not go back), they are all at the front; ``run`` still checks the one it finds."""
        while self._kept and next(iter(self._kept.values())).expires_at <= now:
            self._kept.popitem(last=False)


def _replay(kept: _Kept) -> Response:
    response = Response(content=kept.body, status_code=kept.status, media_type=kept.media_type)
    response.headers[REPLAY_HEADER] = "true"
    return response
