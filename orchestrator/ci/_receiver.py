"""The CI webhook receiver: authenticate a GitHub-style delivery, then start a run for it.

Checks, in order, each refusal with its status and reason code::

    body not whole within the deadline              408 body_timeout        (orchestrator.ci._app)
    client closed the connection mid-body           499 client_disconnected (recorded only)
    body larger than 256 KiB                        413 payload_too_large
    X-GitHub-Event, X-GitHub-Delivery or            400 repeated_header     (``field`` names it)
      X-Hub-Signature-256 sent more than once
    no X-Hub-Signature-256                          401 missing_signature
    signature is not HMAC-SHA256(secret, body)      401 bad_signature      (constant-time)
    X-GitHub-Event ping                             200 {"status": "pong"}
    X-GitHub-Event not deployment / workflow_run    400 unsupported_event
    no X-GitHub-Delivery / not a delivery id        400 missing_delivery_id / invalid_delivery_id
    body not a JSON object / a field wrong          400 malformed_event (``field`` names it)
    event that starts no run (failed workflow run)  202 {"status": "ignored", "reason": ...}
    no event id (deployment.id, workflow_run.id)    400 malformed_event
    signed time missing, or > 5 min ahead           400 malformed_event
    signed time older than the replay window        409 stale_event
    same event id or same body in the last 24 h     409 replayed_delivery
    replay cache or delivery log unusable           503 replay_cache_unavailable (fail closed)
    sender not in the directory / disabled          403 unknown_user / user_disabled
    start_run raises InfraBotError                  422 <its reason>   (TransientError: 503,
                                                    InternalError or another exception: 500)
    run started                                     202 {"status": "accepted", "run_id": ...}

Replays are recognised by what the signature covers, never by ``X-GitHub-Delivery`` (a header
the HMAC does not cover, so a replay can carry any): the event's own id and a digest of the body
(:func:`orchestrator.ci._replay.content_keys`). Each key is claimed in the run log's record of
deliveries (:meth:`RunStore.claim_delivery`) and then in the replay cache (the revocation
registry: Redis in distributed mode). The run log is on disk: an unpersisted Redis that restarts forgets
its claims, the run log does not, so a delivery replayed after the restart is still refused. A
delivery that started nothing for a transient reason (503) is released from both, so the
sender's redelivery is taken (unless releasing fails too, which is logged). The run log's claim
names the run about to be started and is marked answered with the answer; a redelivery of a
delivery whose receiver died before answering or marking that run running takes the claim over
(:mod:`orchestrator.ci._claims`) instead of refusing it. A run taken over after it was marked
running (its first hop never received) is superseded and revoked by run (audited ``revoke`` /
``run_revoked``, request id ``<run>.superseded``): whatever its start published is stale, and
its tokens are refused at the authorization server and every service.

Every answer writes exactly one audit record (service ``webhooks``, action ``ci_event``, request
id = delivery id): deny for a refusal, allow otherwise. Its run id is the run started, or the run
a start that failed had created (and ended ``failed``) before it stopped: the error names it
(:func:`~orchestrator.ci._answers.stopped_run`); the answer's body does not. Neither the body nor
the signature is ever stored or logged.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from orchestrator._log import get_logger
from orchestrator._run_revocation import RunRevocation
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.ci._answers import Answer, Refused, start_refusal, stopped_run
from orchestrator.ci._claims import Claims, DeliveryLog, replayed
from orchestrator.ci._events import sign
from orchestrator.ci._model import CIEvent, MalformedEvent
from orchestrator.ci._parse import (
    delivery_id_of,
    headers_of,
    json_object,
    named_delivery,
    parse_event,
    repository_of,
)
from orchestrator.ci._replay import REPLAY_TTL_SECONDS, StaleEvent, check_fresh, content_keys
from orchestrator.errors import InfraBotError, Unavailable
from orchestrator.identity import Directory, RevocationStore
from orchestrator.runs import SUPERSEDED, new_run_id

MAX_BODY_BYTES = 256 * 1024
EVENT_TYPES = frozenset({"deployment", "workflow_run"})

__all__ = ["EVENT_TYPES", "MAX_BODY_BYTES", "REPLAY_TTL_SECONDS", "DeliveryLog", "StartRun",
           "WebhookReceiver"]


@dataclass
class _Seen:
    """What is known about a delivery so far: what its audit record can say."""

    delivery_id: str | None = None
    repository: str | None = None
    event: CIEvent | None = None
    run_id: str | None = None


class StartRun(Protocol):
    """Starts the run of a CI event under ``run_id``, the run its delivery's claim names
    (:meth:`orchestrator.orchestration.Orchestrator.start`); the run id."""

    def __call__(self, event: CIEvent, *, run_id: str) -> str: ...


class WebhookReceiver:
    """Authenticates CI deliveries and starts runs; see the module docstring for the rules."""

    def __init__(self, secret: bytes, replay: RevocationStore, directory: Directory,
                 audit: AuditStore | None, start_run: StartRun,
                 clock: Callable[[], float] = time.time, *, deliveries: DeliveryLog,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        self._secret = secret
        self._claims = Claims(replay, deliveries, self._superseded)
        self._revocation = RunRevocation(replay, deliveries, audit, clock)
        self._directory = directory
        self._audit = audit
        self._start_run = start_run
        self._clock = clock
        self._max_body = max_body_bytes

    @property
    def max_body_bytes(self) -> int:
        return self._max_body

    def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """The HTTP status and JSON body answering one delivery (``headers`` may repeat a name,
        as Starlette's do in ``items()``)."""
        lower, repeated = headers_of(headers)
        seen = _Seen(named_delivery(lower, repeated))
        try:
            if len(body) > self._max_body:
                raise Refused(413, "payload_too_large", f"body exceeds {self._max_body} bytes")
            if repeated:
                raise Refused(400, "repeated_header", f"{repeated[0]} must be sent once",
                              field=repeated[0])
            answer = self._handle(lower, body, seen)
        except Refused as refusal:
            answer = refusal.answer()
        self._record(seen, answer)
        return answer

    def refuse(self, headers: Mapping[str, str], refusal: Refused) -> Answer:
        """Answer and record a delivery refused before its body was read whole (a deadline
        passed, the client went away)."""
        lower, repeated = headers_of(headers)
        answer = refusal.answer()
        self._record(_Seen(named_delivery(lower, repeated)), answer)
        return answer

    def _handle(self, headers: dict[str, str], body: bytes, seen: _Seen) -> Answer:
        self._check_signature(headers.get("x-hub-signature-256", "").strip(), body)
        event_type = headers.get("x-github-event", "").strip()
        if event_type == "ping":
            return 200, {"status": "pong"}
        if event_type not in EVENT_TYPES:
            raise Refused(400, "unsupported_event", "X-GitHub-Event must be deployment, "
                          "workflow_run or ping")
        delivery_id = delivery_id_of(headers.get("x-github-delivery", "").strip())
        payload = json_object(body)
        seen.repository = repository_of(payload)
        try:
            parsed = parse_event(event_type, delivery_id, payload, self._directory)
            if not isinstance(parsed, CIEvent):
                return 202, {"status": "ignored", "reason": parsed.reason}
            seen.event = parsed  # the audit record of a refusal from here on names its user
            keys = content_keys(event_type, payload, body)
            check_fresh(event_type, payload, self._clock())
        except MalformedEvent as exc:
            raise Refused(400, exc.reason, exc.message, field=exc.field) from None
        except StaleEvent as exc:
            raise Refused(409, exc.reason, exc.message) from None
        run_id = self._claims.claim(keys, new_run_id())  # or the run of a delivery taken over
        try:
            self._check_user(parsed.user)
            seen.run_id = self._start(parsed, seen, run_id)
        except Refused as refused:
            if refused.status >= 500:  # nothing started: let the sender's redelivery through
                self._claims.release(keys, run_id)
            else:
                self._claims.answered(keys, run_id)
            raise
        self._claims.answered(keys, run_id)
        return 202, {"status": "accepted", "run_id": seen.run_id}

    def _superseded(self, run_id: str) -> None:
        """``run_id`` was superseded by its delivery's take-over: revoked, so any token its
        start handed out is refused (its hop, if published, is stale already). Its end was
        queued for revocation too (:mod:`orchestrator._run_end`), which a serving process may
        have done first (recorded then), and which tries again while the registry cannot be
        reached (logged here; the take-over stands)."""
        try:
            revoked = self._revocation.revoke(run_id)
        except Unavailable:
            get_logger(run_id=run_id).warning("superseded_run_unrevoked")
            return
        if revoked:  # else the serving process revoked and recorded it as it ended
            self._revocation.record(run_id, SUPERSEDED)

    def _check_signature(self, provided: str, body: bytes) -> None:
        if not provided:
            raise Refused(401, "missing_signature", "X-Hub-Signature-256 is required")
        expected = sign(self._secret, body).encode()
        if not hmac.compare_digest(expected, provided.encode("utf-8", "replace")):
            raise Refused(401, "bad_signature", "X-Hub-Signature-256 does not match the body")

    def _check_user(self, user: str) -> None:
        entry = self._directory.users.get(user)
        if entry is None:
            raise Refused(403, "unknown_user", "the sender is not in the directory")
        if entry.disabled:
            raise Refused(403, "user_disabled", "the sender's account is disabled")

    def _start(self, event: CIEvent, seen: _Seen, run_id: str) -> str:
        """The run started; a refusal's record names the run a failed start had created."""
        try:
            return self._start_run(event, run_id=run_id)
        except Exception as exc:  # noqa: BLE001 - every failure answers JSON; a bug is logged
            seen.run_id = stopped_run(exc)
            if isinstance(exc, InfraBotError) and exc.reason == "run_exists":
                raise replayed() from None  # another delivery of it started (or took) its run
            refusal = start_refusal(exc)
            if refusal.status == 500:
                get_logger(delivery_id=event.delivery_id, run_id=seen.run_id).exception(
                    "webhook_start_run_crashed")
            raise refusal from None

    def _record(self, seen: _Seen, answer: Answer) -> None:
        status, body = answer
        reason = str(body.get("reason") or body["status"])
        log = get_logger(delivery_id=seen.delivery_id, run_id=seen.run_id)
        hint = _DOWN_HINTS.get(reason) if status == 503 else None
        if hint:  # refused because something it needs is down: say what, on every refusal
            log.warning("webhook_answered", status=status, reason=reason, hint=hint)
        else:
            log.info("webhook_answered", status=status, reason=reason)
        if self._audit is None:
            return
        event = seen.event
        try:
            self._audit.append(AuditRecord(
                time=datetime.fromtimestamp(self._clock(), UTC), service="webhooks",
                action="ci_event", resource=f"github:{seen.repository or 'unknown'}",
                decision="allow" if status < 400 else "deny", reason=reason[:64],
                on_behalf_of=event.user if event else None,
                context=event.context if event else {}, run_id=seen.run_id,
                request_id=seen.delivery_id, status=status))
        except (Unavailable, ValueError):
            get_logger(delivery_id=seen.delivery_id).exception("webhook_audit_failed")


_DOWN_HINTS = {  # a 503's reason: what is down and where it is configured
    "replay_cache_unavailable": "the revocation registry (INFRABOT_REDIS_URL) or the run log "
                                "cannot be used: is Redis running?",
    "broker_unavailable": "the broker (INFRABOT_BROKER_URL) is not answering: is it running?",
    "run_log_unavailable": "the run log (INFRABOT_DATABASE_URL, else runs.sqlite3 in "
                           "INFRABOT_STATE_DIR) cannot be written: is the database up?",
    "authserver_unavailable": "the authorization server (INFRABOT_AUTH_PORT, INFRABOT_HOST) is "
                              "not answering: is `infrabot serve` running?",
}
