"""The one enforcement layer every mock service runs each request through.

For a route (one catalogue action, or several sharing the route), :meth:`Enforcer.handle`:

1. reads the body (bounded) and parses it once (:func:`parse_body`): the action, the audited
   resource, the target check and the handler all read that one parsed object
   (:mod:`mock_services._bodies`);
2. picks the action and names the resource it touches;
3. finds the one bearer credential (RFC 6750; see :mod:`mock_services._bearer`);
4. verifies it and admits the caller (:mod:`mock_services._access`) in one trip off the event
   loop (the revocation check blocks);
5. resolves the resources the request names to their owning attributes and checks them against
   the token's ``ctx`` (:mod:`mock_services._targets`): one resource out of bounds refuses the
   whole request before the handler runs;
6. runs the handler, through the ``Idempotency-Key`` cache on mutating actions;
7. turns every refusal or failure into its answer (never a 5xx for bad input; a JSON string
   with a lone surrogate, which is no Unicode text, is 400 ``malformed_json``);
8. appends exactly one :class:`~orchestrator.audit.AuditRecord` before answering, and returns
   the request id in ``X-Request-Id``; a request with no credential at all is recorded, or
   counted into its source's summary for the minute (:mod:`mock_services._anonymous`), which is
   appended apart from the request's own record.

``decision`` is ``allow`` when the service did what was asked (status below 400), with reason
``ok`` (or ``idempotent_replay``); anything else is ``deny`` with the specific reason code. A
record never holds the token: identity fields come from verified claims only, and are empty when
the refusal came before verification; request values that make a record invalid are redacted.
If the record cannot be written the answer is 503; a mutating action first checks that it can
be (:meth:`AuditStore.check_writable`); an act whose record still failed is recorded (``ok``) by
the first replay of its kept answer to be recorded (:mod:`mock_services._idempotency`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from anyio import to_thread
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mock_services._access import AccessChecker, Caller
from mock_services._anonymous import AnonymousTrail
from mock_services._bearer import (
    ApiError,
    MissingToken,
    bearer_token,
    dpop_proof,
    error_response,
    form_tokens,
    oauth_response,
)
from mock_services._bodies import (
    RouteInput,
    bounded_body,
    http_error_response,
    parse_body,
    validation_response,
)
from mock_services._call_record import REQUEST_ID_HEADER, Call, record_of, request_id_of
from mock_services._idempotency import (
    HEADER,
    IdempotencyCache,
    Recording,
    check_key,
    fingerprint,
    owner_of,
)
from mock_services._sender import Presented
from mock_services._targets import Resolver, TargetRefused
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.catalog import LISTING, Action, Target, clean_text, resource_for
from orchestrator.errors import (
    BodyTimeout,
    ClientDisconnected,
    DPoPRefusal,
    OAuthError,
    Unavailable,
)
from orchestrator.identity import AccessClaims
from orchestrator.tracing import own_span

log = logging.getLogger("mock_services")
Handler = Callable[[Request], Awaitable[Response]]


class Enforcer:
    def __init__(self, service: str, access: AccessChecker, audit: AuditStore,
                 idempotency: IdempotencyCache, clock: Callable[[], float]) -> None:
        self.service = service
        self._clock = clock
        self._access = access
        self._audit = audit
        self._idempotency = idempotency
        self._anonymous = AnonymousTrail()

    async def handle(self, request: Request, actions: Sequence[Action], inner: Handler,
                     resolve: Resolver | None, checks: RouteInput) -> Response:
        call = Call(actions[0], resource_for(actions[0], {}, None), request_id_of(request))
        with own_span(f"enforce {self.service}", scope_required=actions[0].scope):
            try:
                response, reason = await self._run(request, actions, inner, resolve, call,
                                                   checks)
            except Exception as exc:  # noqa: BLE001 - every failure is answered and audited
                if isinstance(exc, TargetRefused):
                    call.target = exc.audit_context()
                response, reason = self._refusal(exc, call.action.scope)
            source = _source(request) if reason == MissingToken.reason else None
            return await self._finish(call, response, reason, source)

    async def refuse_unrouted(self, request: Request, exc: HTTPException) -> Response:
        """A request no route matched (404, 405): answered and audited like any other."""
        unknown = Action("unknown", self.service, request.method, request.url.path, "",
                         "route:unknown", clean_text(request.url.path), "", Target(LISTING))
        call = Call(unknown, unknown.resource, request_id_of(request))
        response, reason = self._refusal(exc, None)
        anonymous = "authorization" not in request.headers \
            and "access_token" not in request.query_params
        return await self._finish(call, response, reason, _source(request) if anonymous else None)

    async def _run(self, request: Request, actions: Sequence[Action], inner: Handler,
                   resolve: Resolver | None, call: Call,
                   checks: RouteInput) -> tuple[Response, str]:
        body = await bounded_body(request)
        try:  # bad input is answered once the caller is known
            checks.check_query(request)
            parsed, unparsable = _parse(request, body), None
        except ApiError as exc:
            parsed, unparsable = None, exc
        call.action = next((a for a in actions if a.matches(parsed)), actions[0])
        # The route's own path parameters and only the query parameters it declares: a field
        # the handler reads from the body is never taken from the query string, so the target
        # check and the audit name what the handler acts on.
        declared = {wire for _, wire in call.action.query}
        values = {**{k: v for k, v in request.query_params.items() if k in declared},
                  **request.path_params}
        call.resource = resource_for(call.action, values, parsed)
        scheme, token = bearer_token(
            request.headers.getlist("authorization"),
            request.query_params.getlist("access_token"),
            form_tokens(request.headers.get("content-type"), body),
        )
        presented = Presented(scheme, dpop_proof(request.headers.getlist("dpop")),
                              request.method, self._access.audience + sent_path(request))
        caller = call.static = (self._access.static_caller(token) if scheme == "bearer"
                                and presented.proof is None else None)
        if caller is None:
            caller = await to_thread.run_sync(self._verify_and_admit, token, presented, call)
        elif call.action.mutating:
            await to_thread.run_sync(self._audit.check_writable)
        if unparsable is not None:
            raise unparsable
        if resolve is not None and call.claims is not None and call.static is None:
            checks.check_body(parsed, body)  # a body of the wrong shape names no target
            targets = resolve(call.action.target.values(values, parsed))
            self._access.check_targets(call.claims, call.action.scope, targets)
        request.state.caller = caller
        key = request.headers.get(HEADER)
        if not call.action.mutating or key is None:
            return await inner(request), "ok"
        print_ = fingerprint(request.method, request.url.path, request.url.query, body, parsed)
        client = call.claims.client_id if call.claims is not None else caller.actor
        answer = await self._idempotency.run(owner_of(caller.principal, client), check_key(key),
                                             print_, lambda: inner(request))
        if answer.unaudited is not None:  # its act has no record yet: this record is the act's
            call.audited = Recording(self._idempotency, answer)
        return answer.response, "ok" if call.audited or not answer.replayed else "idempotent_replay"

    def _verify_and_admit(self, token: str, presented: Presented, call: Call) -> Caller:
        """Both checks in one worker-thread call (each thread hop costs the loop ~0.1 ms of CPU);
        the verified claims stay on ``call`` for the audit record even if admission refuses."""
        def seen(claims: AccessClaims) -> None:
            call.claims = claims

        caller = self._access.verify_and_admit(token, call.action.scope, verified=seen,
                                               presented=presented)
        if call.action.mutating:  # never act unless the act's audit record can be written
            self._audit.check_writable()
        return caller

    def _refusal(self, exc: Exception, scope: str | None) -> tuple[Response, str]:
        if isinstance(exc, DPoPRefusal):
            algs = self._access.sender.algs
            return oauth_response(self.service, exc, scope, dpop_algs=algs), exc.reason
        if isinstance(exc, OAuthError):
            return oauth_response(self.service, exc, scope), exc.reason
        if isinstance(exc, Unavailable):
            return error_response(503, exc.body(), {"Retry-After": "1"}), exc.reason
        if isinstance(exc, ApiError):  # a body cut short: the connection is not reused
            cut_short = exc.status in (BodyTimeout.status, ClientDisconnected.status)
            closing = {"Connection": "close"} if cut_short else None
            return error_response(exc.status, exc.body(), closing), exc.reason
        if isinstance(exc, RequestValidationError):
            return validation_response(exc)
        if isinstance(exc, HTTPException):
            return http_error_response(exc)
        log.exception("service_internal_error", extra={"service": self.service})
        body = {"error": "server_error", "error_description": "internal error",
                "reason": "internal_error"}
        return error_response(500, body), "internal_error"

    def close(self) -> None:
        """Write every open anonymous count (the service is stopping; failures are logged)."""
        self._anonymous.write(self._anonymous.drain(self._clock()), self._audit.append)

    async def _finish(self, call: Call, response: Response, reason: str,
                      anonymous: str | None = None) -> Response:
        """Audit the answer; ``anonymous`` is the source of a request with no credential."""
        status, now = response.status_code, self._clock()
        if anonymous is None:
            own, due = True, self._anonymous.due(now)
        else:
            own, due = self._anonymous.admit(anonymous, self.service, now)
        record: AuditRecord | None = None
        try:
            record = record_of(self.service, call, status, reason, now)
            if own:
                await to_thread.run_sync(self._audit.append, record)
            if call.audited is not None:  # never raises: a failed mark is logged
                await call.audited()
        except Exception:
            log.exception("audit_append_failed", extra={"service": self.service})
            body = {"error": "temporarily_unavailable", "reason": "audit_unavailable",
                    "error_description": "the audit trail cannot be written"}
            response = error_response(503, body, {"Retry-After": "1"})
            if isinstance(call.audited, Recording):  # the act's record is a retry's to write
                await call.audited.failed()
        if due:  # apart from the request's own record; one not written goes back to the trail
            await to_thread.run_sync(self._anonymous.write, due, self._audit.append)
        if record is not None and log.isEnabledFor(logging.INFO):
            log.info("service_call %s", json.dumps(record.content(), sort_keys=True))
        response.headers[REQUEST_ID_HEADER] = call.request_id
        return response


SENT_PATH = "infrabot.sent_path"
"""A scope key: the raw path the client sent, kept by a middleware that rewrites the path."""


def sent_path(request: Request) -> str:
    """The path as the client sent it (its percent-encoding untouched, before any rewrite such
    as AWS's wire forms): what the proof's ``htu`` must name (RFC 9449 4.3)."""
    raw = request.scope.get(SENT_PATH) or request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(request.scope["path"])
    return raw.decode("utf-8", "surrogateescape")


def _source(request: Request) -> str:
    return clean_text(request.client.host) if request.client else "unknown"


def _parse(request: Request, body: bytes) -> Any:
    """:func:`parse_body`; a string with a lone surrogate (no Unicode text) is malformed."""
    parsed = parse_body(request, body)
    try:
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON text") from None
    return parsed


class EnforcedRoute(APIRoute):
    """A FastAPI route whose handler runs inside :meth:`Enforcer.handle`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, enforcer: Enforcer,
                 actions: Sequence[Action], resolve: Resolver | None, **kwargs: Any) -> None:
        self.enforcer = enforcer
        self.actions = tuple(actions)
        self.resolve = resolve
        super().__init__(path, endpoint, **kwargs)

    @property
    def input_checks(self) -> RouteInput:
        return RouteInput.of(self, self.actions)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()  # called once the route's dependant is known
        enforcer, actions, resolve = self.enforcer, self.actions, self.resolve
        checks = self.input_checks

        async def handler(request: Request) -> Response:
            return await enforcer.handle(request, actions, inner, resolve, checks)

        return handler


async def current_caller(request: Request) -> Caller:
    """The admitted caller of the request being handled (a FastAPI dependency).

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in a worker
    thread, one more thread hop per request for an attribute lookup."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise TypeError("handler ran outside the enforcement layer")
    return caller
