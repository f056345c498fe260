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
from orchestrator._dpop_signer import DPoPSigner
from orchestrator.authserver._dpop import DPOP_KEYS_PATH
from orchestrator.authserver._service import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
)
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    Context,
    SigningKey,
    make_assertion,
    make_record,
    unverified_payload,
)

_BY_CODE: dict[str, type[errors.OAuthError]] = {
    cls.code: cls for cls in (
        errors.InvalidRequest, errors.InvalidClient, errors.InvalidGrant,
        errors.UnauthorizedClient, errors.UnsupportedGrantType, errors.UnsupportedTokenType,
        errors.InvalidScope, errors.InvalidTarget, errors.InvalidToken, errors.InsufficientScope,
        errors.InvalidDPoPProof, errors.UseDPoPNonce)
}
_DPOP_PATHS = ("/token", DPOP_KEYS_PATH)


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
    """``dpop``: sign a DPoP proof (RFC 9449) for each token request with this signer's key, so
    the tokens issued are bound to it; a ``use_dpop_nonce`` answer is retried once with the
    server's nonce. ``confirm``: sign a delegation record with each hand-off."""

    def __init__(self, base_url: str, client_id: str, key: SigningKey, *,
                 http: httpx.Client | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 5.0, dpop: DPoPSigner | None = None,
                 confirm: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.confirm = confirm
        self.client_id = client_id
        self.dpop = dpop
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

    def _post(self, path: str, form: dict[str, str], *, prove: bool = True) -> httpx.Response:
        """POST ``form`` with a fresh assertion (and, at the token and DPoP key endpoints, a
        DPoP proof unless not ``prove``)."""
        url = f"{self.base_url}{path}"
        prove = prove and self.dpop is not None and path in _DPOP_PATHS
        response = self._send(url, form, prove)
        if self.dpop is not None and self.dpop.learn(url, response.headers) \
                and response.status_code == 400 \
                and json_object(response).get("error") == "use_dpop_nonce":
            response = self._send(url, form, prove)  # RFC 9449 8: once more, with the nonce
            self.dpop.learn(url, response.headers)
        raise_for_error(response)
        return response

    def _send(self, url: str, form: dict[str, str], prove: bool) -> httpx.Response:
        headers = ({"DPoP": self.dpop.proof("POST", url)}
                   if prove and self.dpop is not None else None)
        try:
            return self._http.post(url, data={**self._auth(), **form}, headers=headers)
        except httpx.TransportError as exc:
            raise errors.Unavailable(f"authorization server unreachable: {type(exc).__name__}",
                                     reason="authserver_unavailable") from exc

    def register_dpop_key(self) -> dict[str, Any]:
        """Register this client's DPoP key (the signer's), so hand-offs to it are bound to it."""
        if self.dpop is None:
            raise errors.ConfigError("this client has no DPoP key to register")
        result: dict[str, Any] = self._post(DPOP_KEYS_PATH, {}).json()
        return result

    def exchange(self, subject_token: str, *, resource: str | None = None,
                 audience: str | None = None, scope: str | None = None,
                 prove: bool = True, confirm: bool | None = None,
                 joined: tuple[str, ...] = ()) -> dict[str, Any]:
        """RFC 8693: exchange ``subject_token`` for a token for a service or the next agent;
        with a DPoP signer, proven by its key unless not ``prove`` (an unbound token). A
        hand-off (``audience``) carries this client's signed delegation record unless not
        ``confirm`` (default: the client's ``confirm``; docs/delegation-chain.md), and a join's
        hand-off the branch tokens it depends on (``joined``; docs/graphs.md)."""
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
                "subject_token_type": TOKEN_TYPE_ACCESS}
        for name, value in (("resource", resource), ("audience", audience), ("scope", scope)):
            if value is not None:
                form[name] = value
        if audience is not None and (self.confirm if confirm is None else confirm):
            record = self._record(subject_token, audience, scope)
            if record is not None:
                form["delegation_record"] = record
        if joined:  # a join's hand-off: the branch tokens it depends on (docs/graphs.md)
            form["joined_tokens"] = " ".join(joined)
        result: dict[str, Any] = self._post("/token", form, prove=prove).json()
        return result

    def _record(self, subject_token: str, audience: str, scope: str | None) -> str | None:
        """This client's signed record of handing ``subject_token`` off to ``audience``; None
        for a subject token it cannot read (the server refuses that token as what it is)."""
        subject = unverified_payload(subject_token, max_bytes=len(subject_token))
        if subject is None:
            return None
        try:
            return make_record(self._key, delegator=self.client_id, delegatee=audience,
                               subject=subject, scope=scope, now=int(self._clock()))
        except ValueError:  # not our token's members: nothing to confirm
            return None

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
