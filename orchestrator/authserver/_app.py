"""The authorization server's HTTP surface (RFC 8414 metadata, JWKS, RFC 8693 token endpoint,
RFC 7662 introspection, RFC 7009 revocation). Handlers parse and answer; decisions live in
:class:`~orchestrator.authserver._service.AuthorizationService`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.audit import public_document
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.authserver._audit import (
    DPOP_KEY_ACTION,
    INTROSPECT_ACTION,
    REVOKE_ACTION,
    TOKEN_ACTION,
)
from orchestrator.authserver._client_keys import CLIENT_KEYS_PATH, add_client_keys_route
from orchestrator.authserver._dpop import DPOP_KEYS_PATH, one_proof
from orchestrator.authserver._federated_root import TOKEN_TYPE_ID
from orchestrator.authserver._forms import one_client_auth, parameter_refusal, read_form
from orchestrator.authserver._service import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
    AuthorizationService,
)
from orchestrator.errors import (
    ConfigError,
    DPoPRefusal,
    InvalidRequest,
    OAuthError,
    Unavailable,
)
from orchestrator.identity import CLIENT_ASSERTION_TYPE

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_FORM_FIELDS = {
    "token": ["grant_type", "client_assertion_type", "client_assertion", "client_id",
              "subject_token", "subject_token_type", "actor_token", "actor_token_type",
              "requested_token_type", "scope", "resource", "audience", "assertion",
              "delegation_record", "joined_tokens"],
    "introspect": ["token", "token_type_hint", "client_assertion_type", "client_assertion"],
    "revoke": ["token", "token_type_hint", "client_assertion_type", "client_assertion"],
    "revocations": ["jti", "user", "run_id", "jkt", "client_assertion_type",
                    "client_assertion"],
    "dpop_keys": ["client_assertion_type", "client_assertion", "client_id"],
}

_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"},
                   "reason": {"type": "string"}},
}
_TOKEN_SCHEMA = {
    "type": "object",
    "required": ["access_token", "issued_token_type", "token_type", "expires_in"],
    "properties": {"access_token": {"type": "string"}, "issued_token_type": {"type": "string"},
                   "token_type": {"type": "string"}, "expires_in": {"type": "integer"},
                   "scope": {"type": "string"}},
}


def _form_doc(name: str, ok: dict[str, Any], errors: tuple[int, ...]) -> dict[str, Any]:
    props = {field: {"type": "string"} for field in _FORM_FIELDS[name]}
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    for status in errors:
        responses[str(status)] = {"description": "OAuth error",
                                  "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    return {"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": props}}}},
        "responses": responses}


async def _audited_form(request: Request, audit: Callable[[Exception], None], *,
                        with_proof: bool = False) -> tuple[dict[str, list[str]], str | None]:
    """The form (and ``with_proof``, the one ``DPoP`` proof) of a request to an endpoint that
    audits its refusals (all but the metadata's): a request refused here is audited by
    ``audit``, as the service audits every later refusal."""
    try:
        form = await read_form(request)
        one_client_auth(form, request.headers.getlist("authorization"))
        return form, one_proof(request.headers.getlist("dpop")) if with_proof else None
    except OAuthError as exc:
        await run_in_threadpool(audit, exc)
        raise


class _HeadAsGet:
    """RFC 9110 section 9.1: HEAD wherever GET is served. A HEAD request is routed as a GET (a
    path without GET still answers 404 or 405) and answered with GET's status and headers, no
    body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message: Message) -> None:
            await send({**message, "body": b""} if "body" in message else message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def create_app(service: AuthorizationService) -> FastAPI:
    app = FastAPI(title="InfraBot Chains authorization server", version="1.0.0",
                  docs_url=None, redoc_url=None)
    app.add_middleware(_HeadAsGet)
    base = service.settings.auth_url

    def nonce_header() -> dict[str, str]:
        nonce = service.dpop.nonce(now=service.now())
        return {"DPoP-Nonce": nonce} if nonce is not None else {}

    @app.exception_handler(OAuthError)
    async def _oauth_error(_request: Request, exc: OAuthError) -> JSONResponse:
        # RFC 9449 8: the nonce to use travels with use_dpop_nonce (and every other answer).
        return JSONResponse(exc.body(), status_code=exc.status,
                            headers={**NO_STORE, **nonce_header()})

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(_request: Request, exc: RequestValidationError) -> JSONResponse:
        error = parameter_refusal(exc.errors()[0])
        return JSONResponse(error.body(), status_code=400, headers=NO_STORE)

    @app.exception_handler(HTTPException)
    async def _unrouted(_request: Request, exc: HTTPException) -> JSONResponse:
        """An unknown path (404) or method (405): the error shape every answer here has."""
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                 "invalid_request")
        headers = dict(exc.headers or {})
        if "GET" in headers.get("Allow", "").split(", "):  # HEAD is served wherever GET is
            headers["Allow"] += ", HEAD"
        return JSONResponse({"error": code, "error_description": str(exc.detail),
                             "reason": code}, status_code=exc.status_code,
                            headers={**NO_STORE, **headers})

    @app.exception_handler(Unavailable)
    async def _unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=503, headers={**NO_STORE, "Retry-After": "1"})

    @app.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
    async def metadata() -> dict[str, Any]:
        algs = list(service.settings.allowed_algs)
        return {
            "issuer": service.issuer,
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks.json",
            "client_keys_uri": f"{base}{CLIENT_KEYS_PATH}",  # delegation_chain verification
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "grant_types_supported": [GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
            "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
            "scopes_supported": sorted({s for svc in service.directory.services.values()
                                        for s in svc.scopes}),
            # an ID token roots a run only when the directory trusts the provider that signed it
            "subject_token_types_supported": [TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT, *(
                [TOKEN_TYPE_ID] if service.directory.identity_providers else [])],
            "actor_token_types_supported": [TOKEN_TYPE_JWT],
            "client_assertion_types_supported": [CLIENT_ASSERTION_TYPE],
            "access_token_signing_alg_values_supported": [service.settings.signing_alg],
            "dpop_signing_alg_values_supported": list(service.dpop.policy.allowed_algs),
            "max_delegation_depth": service.settings.max_depth,
            "service_documentation": f"{base}/openapi.json",
        }

    @app.get("/jwks.json", summary="Published signing keys (RFC 7517)")
    async def jwks() -> JSONResponse:
        service.keyring.refresh(now=service.now())
        return JSONResponse(service.keyring.jwks().to_dict(),
                            headers={"Cache-Control": "public, max-age=60"})

    add_client_keys_route(app, service.directory, service.client_keys)

    @app.get("/audit/keys", summary="Audit public keys that verify signed checkpoints (JWKS)",
             responses={404: {"description": "no audit key yet", "content": {
                 "application/json": {"schema": _ERROR_SCHEMA}}}})
    async def audit_keys() -> JSONResponse:
        """Not in /jwks.json on purpose: an audit key must never verify an access token. Only
        public members are served, current and retired keys alike."""
        try:
            document = public_document(service.settings.audit_keys_dir / PUBLIC_FILE)
        except ConfigError:
            return JSONResponse({"error": "not_found", "error_description": "no audit key",
                                 "reason": "no_audit_keys"}, status_code=404)
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})

    def refused(action: str) -> Callable[[Exception], None]:
        return lambda exc: service.audit_refused_form(action, exc)

    async def token(request: Request) -> Response:
        form, dpop = await _audited_form(request, refused(TOKEN_ACTION), with_proof=True)
        issued = await run_in_threadpool(service.token, form, dpop)
        return JSONResponse(issued.body(), headers={**NO_STORE, **nonce_header()})

    async def dpop_keys(request: Request) -> Response:
        form, dpop = await _audited_form(request, refused(DPOP_KEY_ACTION), with_proof=True)
        registered = await run_in_threadpool(service.register_dpop_key, form, dpop)
        return JSONResponse(registered, headers={**NO_STORE, **nonce_header()})

    async def introspect(request: Request) -> Response:
        form, _ = await _audited_form(request, refused(INTROSPECT_ACTION))
        return JSONResponse(await run_in_threadpool(service.introspect, form), headers=NO_STORE)

    async def revoke(request: Request) -> Response:
        form, _ = await _audited_form(request, refused(REVOKE_ACTION))
        await run_in_threadpool(service.revoke, form)
        return Response(status_code=200, headers=NO_STORE)

    async def revocations(request: Request) -> Response:
        form, _ = await _audited_form(request, refused(REVOKE_ACTION))
        return JSONResponse(await run_in_threadpool(service.revoke_by, form), headers=NO_STORE)

    form_routes = (  # path, the endpoint, its _FORM_FIELDS name, summary, answer's schema
        ("/token", token, "token", "RFC 8693 token exchange and the RFC 7523 root grant",
         _TOKEN_SCHEMA),
        (DPOP_KEYS_PATH, dpop_keys, "dpop_keys",
         "Register the caller's DPoP key (proven by a DPoP proof)", {"type": "object"}),
        ("/introspect", introspect, "introspect", "RFC 7662 token introspection",
         {"type": "object", "required": ["active"],
          "properties": {"active": {"type": "boolean"}}}),
        ("/revoke", revoke, "revoke", "RFC 7009 token revocation (cascades to exchanged tokens)",
         {"type": "object"}),
        ("/revocations", revocations, "revocations",
         "Revoke by jti, user or run (trusted clients)", {"type": "object"}),
    )
    documented: dict[str, Any] = {}
    for path, endpoint, name, summary, ok in form_routes:
        # A plain Starlette route: the form is read and checked by the service, so FastAPI's
        # dependency injection and validation would be work per request for nothing.
        app.add_route(path, endpoint, methods=["POST"], include_in_schema=False)
        documented[path] = {"post": {"summary": summary, "operationId": name,
                                     **_form_doc(name, ok, (400, 401, 503))}}

    def openapi() -> dict[str, Any]:
        """FastAPI's document of its own routes, with the plain form routes' operations."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"] = {**schema.get("paths", {}), **documented}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/audit", summary="A token's log_url: its audit records (bearer: it or a descendant)",
             responses={401: {"description": "no or invalid bearer token", "content": {
                 "application/json": {"schema": _ERROR_SCHEMA}}},
                 403: {"description": "the bearer is not in this token's chain", "content": {
                     "application/json": {"schema": _ERROR_SCHEMA}}}})
    async def audit_log(request: Request, jti: str = Query(min_length=8, max_length=64,
                                                           pattern=r"^[A-Za-z0-9_-]+$")
                        ) -> JSONResponse:
        headers = request.headers.getlist("authorization")
        # RFC 7235 section 2.1: the auth-scheme is case-insensitive, as the services read it.
        scheme, _, credential = headers[0].strip().partition(" ") if headers else ("", "", "")
        if len(headers) > 1 or (headers and (scheme.lower() not in ("bearer", "dpop")
                                             or not credential)):
            raise InvalidRequest("one Authorization: Bearer (or DPoP) header is expected",
                                 reason="malformed_authorization")
        bearer = credential.strip() if headers else None
        proof = one_proof(request.headers.getlist("dpop"))
        try:
            records = await run_in_threadpool(
                lambda: service.audit_log(bearer, jti, scheme=scheme.lower(), proof=proof))
        except OAuthError as exc:
            error = f'error="{exc.code}"' if exc.reason != "missing_token" else ""
            dpop = isinstance(exc, DPoPRefusal)
            challenge = f'{"DPoP" if dpop else "Bearer"} realm="authserver"' \
                        f'{", " + error if error else ""}'
            return JSONResponse(exc.body(), status_code=exc.status, headers={
                **NO_STORE, "WWW-Authenticate": challenge, **(nonce_header() if dpop else {})})
        return JSONResponse({"jti": jti, "records": records}, headers=NO_STORE)

    @app.get("/health", summary="Liveness and registry reachability")
    async def health() -> JSONResponse:
        try:
            await run_in_threadpool(service.revocation.ping)
        except Unavailable as exc:
            return JSONResponse({"status": "degraded", "reason": exc.reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app
