"""The in-process revocation registry, for embedded mode and tests: the rules it applies and
the interface it implements are :mod:`._revocation`'s. Its memory is this process's, so its
epoch is new with each process (a token of another process's registry is ``registry_reset``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self

from orchestrator.errors import PredatesMemory
from orchestrator.identity._claims import AccessClaims
from orchestrator.identity._revocation import (
    MEMORY_BEGAN_TOLERANCE_SECONDS,
    REVOKED_KEPT_PAST_EXPIRY_SECONDS,
    RUN_REVOCATION_TTL,
    PendingCheck,
    RevocationTarget,
    Standing,
    new_epoch,
    refusal_for,
)


def _predates(issued_at: int | None, began: int) -> bool:
    return issued_at is not None and issued_at + MEMORY_BEGAN_TOLERANCE_SECONDS < began


class MemoryRevocationStore:
    """In-process registry for embedded mode and tests."""

    remote = False

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 epoch: str | None = None) -> None:
        self._clock = clock
        self.epoch = epoch or new_epoch()  # this process's memory is the registry's
        self.began = int(clock())
        self._lock = threading.Lock()
        self._jtis: dict[str, float] = {}
        self._runs: dict[str, float] = {}  # until when
        self._keys: dict[str, float] = {}
        self._users: dict[str, int] = {}
        self._once: dict[str, float] = {}
        self._values: dict[str, tuple[str, float]] = {}

    def revoke_jti(self, jti: str, *, expires_at: int) -> None:
        with self._lock:
            self._jtis[jti] = expires_at

    def revoke_user(self, user: str) -> int:
        with self._lock:
            self._users[user] = self._users.get(user, 0) + 1
            return self._users[user]

    def revoke_run(self, run_id: str, *, expires_at: int | None = None) -> bool:
        now = self._clock()
        until = (expires_at + REVOKED_KEPT_PAST_EXPIRY_SECONDS if expires_at is not None
                 else now + RUN_REVOCATION_TTL)
        with self._lock:
            if len(self._runs) > 100_000:
                self._runs = {run: t for run, t in self._runs.items() if t > now}
            before = self._runs.get(run_id, 0)
            self._runs[run_id] = max(before, until)  # a revocation is extended, never shortened
            return before <= now

    def revoke_key(self, jkt: str, *, expires_at: int) -> None:
        with self._lock:
            self._keys[jkt] = expires_at + REVOKED_KEPT_PAST_EXPIRY_SECONDS

    def user_version(self, user: str) -> int:
        return self._users.get(user, 0)

    def standing(self, user: str) -> Standing:
        return Standing(self.epoch, self.user_version(user))

    def check(self, claims: AccessClaims) -> None:
        jkt = RevocationTarget.of(claims).jkt
        with self._lock:
            revoked = {j for j in (claims.jti, *claims.ancestors) if j in self._jtis}
            key_revoked = jkt is not None and self._keys.get(jkt, 0) > self._clock()
            refusal = refusal_for(claims, self.epoch, revoked, key_revoked,
                                  self._runs.get(claims.ctx.run_id, 0) > self._clock(),
                                  self._users.get(claims.sub, 0))
        if refusal is not None:
            raise refusal

    def claim_once(self, key: str, *, ttl: int, issued_at: int | None = None) -> bool:
        if _predates(issued_at, self.began):
            raise PredatesMemory
        now = self._clock()
        with self._lock:
            if len(self._once) > 100_000:
                self._once = {k: t for k, t in self._once.items() if t > now}
            if self._once.get(key, 0) > now:
                return False
            self._once[key] = now + ttl
            return True

    def begin(self, target: RevocationTarget | None, *,
              claim: tuple[str, int] | None = None,
              issued_at: int | None = None) -> PendingCheck:
        try:
            claimed = (self.claim_once(claim[0], ttl=claim[1], issued_at=issued_at)
                       if claim is not None else True)
        except PredatesMemory:
            return AnsweredCheck(self.check, None)
        return AnsweredCheck(self.check, claimed)

    def release_once(self, key: str) -> None:
        """Forget a claim whose work failed transiently, so a retry of it is accepted."""
        with self._lock:
            self._once.pop(key, None)

    def remember(self, key: str, value: str, *, ttl: int) -> None:
        with self._lock:
            self._values[key] = (value, self._clock() + ttl)

    def recall(self, key: str) -> str | None:
        with self._lock:
            value, until = self._values.get(key, ("", 0.0))
        return value if until > self._clock() else None

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


class AnsweredCheck:
    """A :class:`PendingCheck` whose claim is already answered (None: it predates the
    registry's memory); its check is a plain check."""

    def __init__(self, check: Callable[[AccessClaims], None], claimed: bool | None) -> None:
        self._check, self._claimed = check, claimed

    def claimed(self) -> bool:
        if self._claimed is None:
            raise PredatesMemory
        return self._claimed

    def check(self, claims: AccessClaims) -> None:
        self._check(claims)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
