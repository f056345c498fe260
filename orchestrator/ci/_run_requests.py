"""``POST /runs``: a person starts a workflow with a token from their own identity provider.

The bearer token must come from a provider the directory trusts (docs/federation.md); the body
names the workflow and its parameters::

    {"workflow": "manual-check",
     "parameters": {"environment": "staging", "repository": "acme/service-x",
                    "commit": "9f2c1e7", "service": "service-x", "pr": 124}}

The run's trigger is ``user_request``. Each refusal, with its status and reason::

    no Authorization: Bearer                     401 missing_token
    token refused by the provider's rules        401 <the verifier's reason> (untrusted_issuer,
                                                     audience_mismatch, token_expired, ...)
    provider's keys cannot be fetched            503 jwks_unavailable
    user not in the directory (no just-in-time)  403 unknown_user
    body not JSON / a field wrong                400 malformed_request (``field`` names it)
    the run cannot be started                    422 <the orchestrator's reason> (503 transient)
    started                                      202 {"status": "accepted", "run_id": ...}

The token itself goes only to the orchestrator, which exchanges it at the authorization server
(which verifies it again); it is never stored or logged. Each answer writes one audit record
(service ``webhooks``, action ``run_request``); its run id is the run started, or the run a start
that failed had created (and ended ``failed``) before it stopped, as at the webhook receiver.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from orchestrator._log import get_logger
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.ci._answers import Answer, Refused, start_refusal, stopped_run
from orchestrator.ci._model import COMMIT_PATTERN, NAME_PATTERN, REPOSITORY_PATTERN, CIEvent
from orchestrator.errors import InvalidGrant, InvalidToken, TransientError
from orchestrator.federation import UserTokens
from orchestrator.identity import federated_holder

RUNS_ROUTE = "/runs"
MAX_REQUEST_BYTES = 16 * 1024

StartRun = Callable[[CIEvent, str, str], str]  # (event, workflow, user token) -> run id


class RunParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    environment: str = Field(pattern=NAME_PATTERN)
    repository: str = Field(pattern=REPOSITORY_PATTERN)
    commit: str = Field(pattern=COMMIT_PATTERN)
    service: str | None = Field(None, pattern=NAME_PATTERN)
    pr: StrictInt | None = Field(None, ge=1, le=10**9)


class RunRequest(BaseModel):
    """The body of ``POST /runs``."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    workflow: str = Field(pattern=NAME_PATTERN)
    parameters: RunParameters


@dataclass
class _Seen:
    """What is known about a request so far: what its audit record can say."""

    user: str | None = None
    idp: str | None = None
    event: CIEvent | None = None
    run_id: str | None = None


class RunRequests:
    """Starts runs for the bearers of trusted identity-provider tokens."""

    def __init__(self, tokens: UserTokens, audit: AuditStore | None, start_run: StartRun,
                 clock: Callable[[], float] = time.time) -> None:
        self._tokens, self._audit, self._start_run, self._clock = tokens, audit, start_run, clock

    def receive(self, authorization: str | None, body: bytes) -> Answer:
        """The HTTP status and JSON body answering one request."""
        seen = _Seen()
        try:
            answer = self._handle(authorization, body, seen)
        except Refused as refusal:
            answer = refusal.answer()
        self._record(seen, answer)
        return answer

    def refuse(self, refusal: Refused) -> Answer:
        """Answer and record a request refused before its body was read whole (a deadline
        passed, the client went away): nothing of it is known yet."""
        answer = refusal.answer()
        self._record(_Seen(), answer)
        return answer

    def _handle(self, authorization: str | None, body: bytes, seen: _Seen) -> Answer:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "missing_token", "Authorization: Bearer <your identity "
                          "provider's token> is required")
        try:
            provider, identity = self._tokens.verify(token.strip())
            seen.user, seen.idp = identity.user, identity.issuer
            federated_holder(self._tokens.directory, provider, identity)
        except InvalidToken as exc:
            raise Refused(401, exc.reason, exc.message) from None
        except InvalidGrant as exc:
            raise Refused(403, exc.reason, exc.message) from None
        except TransientError as exc:
            raise Refused(503, exc.reason, exc.message) from None
        request = _request(body)
        p = request.parameters
        event = CIEvent(
            delivery_id=f"request-{secrets.token_hex(8)}", event_type="user_request",
            user=identity.user, repository=p.repository,
            service=p.service or p.repository.rpartition("/")[2], environment=p.environment,
            commit=p.commit, trigger="user_request", pr=p.pr, idp=identity.issuer)
        seen.event = event
        seen.run_id = self._start(event, request.workflow, token.strip(), seen)
        return 202, {"status": "accepted", "run_id": seen.run_id}

    def _start(self, event: CIEvent, workflow: str, token: str, seen: _Seen) -> str:
        """The run started; a refusal's record names the run a failed start had created."""
        try:
            return self._start_run(event, workflow, token)
        except Exception as exc:  # noqa: BLE001 - every failure answers JSON; a bug is logged
            seen.run_id = stopped_run(exc)
            refusal = start_refusal(exc)
            if refusal.status == 500:
                get_logger(user=event.user, run_id=seen.run_id).exception("run_request_crashed")
            raise refusal from None

    def _record(self, seen: _Seen, answer: Answer) -> None:
        status, body = answer
        reason = str(body.get("reason") or body["status"])
        get_logger(run_id=seen.run_id).info("run_request_answered", status=status,
                                            reason=reason)
        if self._audit is None:
            return
        context = (seen.event.context if seen.event
                   else {"idp": seen.idp} if seen.idp else {})
        try:
            self._audit.append(AuditRecord(
                time=datetime.fromtimestamp(self._clock(), UTC), service="webhooks",
                action="run_request", resource=RUNS_ROUTE,
                decision="allow" if status < 400 else "deny", reason=reason[:64],
                on_behalf_of=seen.user, context=context, run_id=seen.run_id, status=status))
        except (TransientError, ValueError):
            get_logger().exception("run_request_audit_failed")


def _request(body: bytes) -> RunRequest:
    if len(body) > MAX_REQUEST_BYTES:
        raise Refused(400, "malformed_request", f"body exceeds {MAX_REQUEST_BYTES} bytes",
                       field="body")
    try:
        return RunRequest.model_validate(json.loads(body.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        field = "body"
        if isinstance(exc, ValidationError):
            field = ".".join(str(x) for x in exc.errors()[0]["loc"]) or "body"
        raise Refused(400, "malformed_request", "the body must be {workflow, parameters: "
                      "{environment, repository, commit[, service, pr]}}", field=field) from None
