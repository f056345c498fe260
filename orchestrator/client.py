"""A client of the authorization server, used by agents, the orchestrator, the CLI and tests.

It authenticates every call with ``private_key_jwt`` (a fresh assertion each time, so replay
protection never trips on a retry) and turns error answers back into the project's exceptions:
an OAuth error body becomes the matching :class:`~orchestrator.errors.OAuthError` with its reason;
a 5xx, a timeout or a refused connection becomes :class:`~orchestrator.errors.Unavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

import httpx

from orchestrator import errors
from orchestrator.authserver._service import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
)
from orchestrator.identity import CLIENT_ASSERTION_TYPE, Context, SigningKey, make_assertion

_BY_CODE: dict[str, type[errors.OAuthError]] = {
    cls.code: cls for cls in (
        errors.InvalidRequest, errors.InvalidClient, errors.InvalidGrant,
        errors.UnauthorizedClient, errors.UnsupportedGrantType, errors.UnsupportedTokenType,
        errors.InvalidScope, errors.InvalidTarget, errors.InvalidToken, errors.InsufficientScope)
}


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body when it is a JSON object, else ``{}`` (an error page, an empty body)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def reason_of(response: httpx.Response) -> str:
    """``ok`` for an answer below 400; else its ``reason`` or ``error``, else ``http_<status>``."""
    if response.status_code < 400:
        return "ok"
    return _reason_in(json_object(response), response.status_code)


def _reason_in(body: dict[str, Any], status: int) -> str:
    return str(body.get("reason") or body.get("error") or f"http_{status}")


def raise_for_error(response: httpx.Response) -> None:
    """Raise the project's exception for an error answer; return for a 2xx."""
    if response.status_code < 400:
        return
    body = json_object(response)
    reason = _reason_in(body, response.status_code)
    message = str(body.get("error_description") or f"HTTP {response.status_code}")
    if response.status_code >= 500:
        raise errors.Unavailable(message, reason=reason)
    cls = _BY_CODE.get(str(body.get("error")), errors.InvalidRequest)
    raise cls(message, reason=reason)


class AuthClient:
    def __init__(self, base_url: str, client_id: str, key: SigningKey, *,
                 http: httpx.Client | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._key = key
        self._clock = clock
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def assertion(self, ttl: int = 60) -> str:
        return make_assertion(self._key, issuer=self.client_id, subject=self.client_id,
                              audience=f"{self.base_url}/token", now=int(self._clock()), ttl=ttl)

    def _auth(self) -> dict[str, str]:
        return {"client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": self.assertion(), "client_id": self.client_id}

    def _post(self, path: str, form: dict[str, str]) -> httpx.Response:
        try:
            response = self._http.post(f"{self.base_url}{path}", data={**self._auth(), **form})
        except httpx.TransportError as exc:
            raise errors.Unavailable(f"authorization server unreachable: {type(exc).__name__}",
                                     reason="authserver_unavailable") from exc
        raise_for_error(response)
        return response

    def exchange(self, subject_token: str, *, resource: str | None = None,
                 audience: str | None = None, scope: str | None = None) -> dict[str, Any]:
        """RFC 8693: exchange ``subject_token`` for a token for a service or the next agent."""
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
                "subject_token_type": TOKEN_TYPE_ACCESS}
        for name, value in (("resource", resource), ("audience", audience), ("scope", scope)):
            if value is not None:
                form[name] = value
        result: dict[str, Any] = self._post("/token", form).json()
        return result

    def root_token(self, user: str, scopes: list[str], ctx: Context,
                   first_agent: str) -> dict[str, Any]:
        """RFC 7523 grant: the root token of a run, for ``user``, rooted in ``ctx``."""
        grant = make_assertion(self._key, issuer=self.client_id, subject=user,
                               audience=f"{self.base_url}/token", now=int(self._clock()),
                               extra={"ctx": ctx.model_dump()})
        form = {"grant_type": GRANT_JWT_BEARER, "assertion": grant, "scope": " ".join(scopes),
                "audience": first_agent}
        result: dict[str, Any] = self._post("/token", form).json()
        return result

    def user_root_token(self, user_token: str, scopes: list[str], ctx: Context,
                        first_agent: str) -> dict[str, Any]:
        """RFC 8693: the root token of a run for the user a trusted identity provider's token
        names (docs/federation.md); the run's ``ctx`` goes in an ``actor_token`` this client
        signs."""
        actor = make_assertion(self._key, issuer=self.client_id, subject=self.client_id,
                               audience=f"{self.base_url}/token", now=int(self._clock()),
                               extra={"ctx": ctx.model_dump()})
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": user_token,
                "subject_token_type": TOKEN_TYPE_JWT, "actor_token": actor,
                "actor_token_type": TOKEN_TYPE_JWT, "scope": " ".join(scopes),
                "audience": first_agent}
        result: dict[str, Any] = self._post("/token", form).json()
        return result

    def introspect(self, token: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/introspect", {"token": token}).json()
        return result

    def revoke(self, token: str) -> None:
        self._post("/revoke", {"token": token})

    def revoke_by(self, **target: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/revocations", target).json()
        return result
