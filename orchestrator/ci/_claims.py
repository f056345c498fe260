"""The webhook receiver's claim of a delivery: each content key claimed in the replay cache and
in the run log's record of deliveries, linked to the run the receiver is about to start.

Each key is claimed in the run log first, then in the replay cache. A key either had claimed (the
run log is on disk: the replay cache may have lost its memory; receivers with a run log each
share the replay cache) makes the delivery a replay (409), unless the run log says every such
key was claimed, for one run, by a receiver that neither answered nor marked that run running
(``starting``: it died mid-start), or that marked it running but whose first hop no hop ever
received (``started``, its hand-off still ``sending`` in the hop journal: it died before the
publish returned): then this delivery takes it over (``RunStore.take_over_delivery``,
``RunStore.take_over_started``, each exclusive) and starts it. A run taken over once running is
superseded: what its start published, if anything, is stale, and the caller is told
(``superseded``, which revokes it: its tokens are refused too). A claim that cannot be checked
answers 503 and is released, the key whose write failed included (its commit may have happened,
its answer lost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from orchestrator._log import get_logger
from orchestrator.ci._answers import Refused
from orchestrator.ci._replay import REPLAY_TTL_SECONDS
from orchestrator.errors import Unavailable
from orchestrator.identity import RevocationStore
from orchestrator.runs import DeliveryClaim, Run


class DeliveryLog(Protocol):
    """Where received deliveries are recorded durably (:class:`~orchestrator.runs.RunStore`)."""

    def claim_delivery(self, delivery_id: str, *, ttl: int,  # a content key, for a run
                       run_id: str | None = None) -> bool: ...
    def delivery_claim(self, delivery_id: str) -> DeliveryClaim | None: ...
    def take_over_delivery(self, keys: Sequence[str], orphan: str, run_id: str
                           ) -> str | None: ...
    def take_over_started(self, keys: Sequence[str], orphan: str, run_id: str
                          ) -> str | None: ...
    def answer_delivery(self, keys: Sequence[str], run_id: str) -> None: ...
    def release_delivery(self, delivery_id: str, run_id: str | None = None) -> None: ...
    def get(self, run_id: str, *, kinds: Sequence[str] | None = None) -> Run | None: ...


class Claims:
    """Claims, answers and releases the content keys of deliveries; ``superseded`` is called
    with the run whose delivery a take-over moved after it was marked running (the take-over
    ended it, or something had ended it already: the run deadline, say)."""

    def __init__(self, replay: RevocationStore, log: DeliveryLog,
                 superseded: Callable[[str], None]) -> None:
        self._replay, self._log, self._superseded = replay, log, superseded

    def claim(self, keys: Sequence[str], run_id: str) -> str:
        """Claim ``keys`` for ``run_id``; the run id to start the delivery under (``run_id``, or
        the claimed run of a delivery taken over). Refused 409 for a replay, 503 if a store
        fails (nothing left claimed)."""
        claimed: list[str] = []
        taken: list[str] = []
        for key in keys:  # the run log first: a receiver that dies between leaves its claim
            try:
                recorded = self._log.claim_delivery(key, ttl=REPLAY_TTL_SECONDS, run_id=run_id)
            except Unavailable:  # its COMMIT may have happened, its answer lost: release it
                self._release_logged(key, run_id)  # too (idempotent), or it stays 409
                self.release(claimed, run_id)
                raise unchecked() from None
            try:
                first = self._replay.claim_once(f"webhook:{key}", ttl=REPLAY_TTL_SECONDS)
            except Unavailable:
                self.release([*claimed, key] if recorded else claimed, run_id)
                raise unchecked() from None
            if not recorded:
                taken.append(key)
            elif first:
                claimed.append(key)
            else:  # the replay cache has it, another run log (or none) had not: a replay
                self.answered([*claimed, key], run_id)
                raise replayed()
        if not taken:
            return run_id
        try:
            target = self._take_over(keys, taken, run_id)
        except Unavailable:
            self.release(claimed, run_id)
            raise unchecked() from None
        if target is None:
            self.answered(claimed, run_id)  # a replay's new keys take no one over later
            raise replayed()
        get_logger(run_id=target).warning("webhook_delivery_taken_over")
        return target

    def _take_over(self, keys: Sequence[str], taken: list[str], run_id: str) -> str | None:
        """The run to start a delivery under whose every key seen was claimed, for one run, by
        a start that may have died: before its run was marked running (``starting``), or after
        but before its first hop was received (``started``, the store checks the journal)."""
        claims = [self._log.delivery_claim(key) for key in taken]
        found = {(claim.run_id, claim.state) for claim in claims if claim is not None}
        if len(found) != 1 or len(claims) != sum(claim is not None for claim in claims):
            return None
        orphan, state = found.pop()
        if state == "starting":
            return self._log.take_over_delivery(keys, orphan, run_id)
        if state == "started":
            target = self._log.take_over_started(keys, orphan, run_id)
            if target is not None:
                self._superseded(orphan)
            return target
        return None

    def answered(self, keys: Sequence[str], run_id: str) -> None:
        """The delivery claimed for ``run_id`` was answered: a redelivery is a replay now."""
        if not keys:
            return
        try:
            self._log.answer_delivery(keys, run_id)
        except Unavailable:  # its run left pending, or a take-over starts the same again
            get_logger(run_id=run_id).warning("webhook_answer_unrecorded")

    def release(self, keys: Sequence[str], run_id: str | None = None) -> None:
        """Forget ``keys`` (still claimed for ``run_id``): the sender's redelivery is taken."""
        for key in keys:
            try:
                self._replay.release_once(f"webhook:{key}")
            except Unavailable:
                get_logger(replay_key=key).warning("webhook_release_failed")
            self._release_logged(key, run_id)

    def _release_logged(self, key: str, run_id: str | None) -> None:
        try:
            self._log.release_delivery(key, run_id)
        except Unavailable:
            get_logger(replay_key=key).warning("webhook_release_failed")


def replayed() -> Refused:
    return Refused(409, "replayed_delivery", "this event was already received: the same "
                   "event id or the same signed body")


def unchecked() -> Refused:
    return Refused(503, "replay_cache_unavailable",
                   "cannot check the delivery for replay; try again later")
