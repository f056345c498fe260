"""A real authorization server on loopback, one client per identity, and helpers to mint and forge
tokens with the server's own key ring and to read what the server wrote to its audit store.

Servers start once per module (``server``); a test that changes lasting state (key rotation, a
different ``max_depth``) gets its own. Revocation tests run against the in-process registry and
the real Redis (``store_server``), Redis flushed (db 15) before each test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from jwt.algorithms import get_default_algorithms

from infrabot.stack import Stack, bind_ports
from orchestrator._servers import ServerGroup
from orchestrator.audit import StoredRecord
from orchestrator.authserver import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    create_app,
)
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    Context,
    MemoryRevocationStore,
    RevocationStore,
    SigningKey,
    make_assertion,
    new_jti,
)
from orchestrator.identity._jws import canonical
from orchestrator.registry import RedisRevocationStore
from tests._redis import DEFAULT_TEST_REDIS_URL
from tests.federation._idp import AUDIENCE, IdPServer, Vendor, rsa_key
from tests.federation.conftest import workflows_with

ORCH = "client:orchestrator"
INFRABOT = "agent:infrabot"
ARGOCD = "agent:argocd"
CLEANUP = "agent:cleanup"
IDENTITIES = (ORCH, INFRABOT, ARGOCD, CLEANUP)

# What the post-deploy workflow asks for (everything Sam holds except secrets:manage).
WORKFLOW_SCOPES = [
    "urn:infra:monitoring:read",
    "urn:infra:repo:read",
    "urn:infra:deploy:comment",
    "urn:infra:deploy:create",
    "urn:infra:infrastructure:read",
    "urn:infra:infrastructure:tag",
    "urn:infra:infrastructure:clean",
    "urn:infra:incident:read",
    "urn:infra:incident:resolve",
]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, read without verifying it (tests only)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def unverified_header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return header


def sign_raw(header: dict[str, Any], payload: object, key: SigningKey, *,
             alg: str | None = None) -> str:
    """A compact JWS built by hand: any header, any payload (an object, or raw ``bytes``)."""
    body = b64(payload) if isinstance(payload, bytes) else b64json(payload)
    signing_input = f"{b64json(header)}.{body}".encode()
    name = alg or key.alg
    signature = canonical(name, get_default_algorithms()[name].sign(signing_input, key.private))
    return f"{signing_input.decode()}.{b64(signature)}"


def refusal(response: httpx.Response, status: int, error: str, reason: str) -> dict[str, Any]:
    """Assert an OAuth error answer: status, RFC code and our reason; return the body."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body["reason"] == reason, body
    assert response.headers["cache-control"] == "no-store"
    return body


@dataclass
class AuthServer:
    """A running authorization server and everything a test needs to talk to it."""

    settings: Settings
    stack: Stack
    http: httpx.Client
    clients: dict[str, AuthClient] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.settings.auth_url

    @property
    def issuer(self) -> str:
        return self.settings.issuer_url

    @property
    def aws(self) -> str:
        return self.settings.service_url("aws")

    def service(self, name: str) -> str:
        return self.settings.service_url(name)

    # -- raw HTTP --------------------------------------------------------------------------------

    def post(self, path: str, data: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(f"{self.url}{path}", data=data, **kw)

    def assertion(self, client_id: str, *, key: SigningKey | None = None, ttl: int = 60,
                  now: int | None = None, audience: str | None = None,
                  issuer: str | None = None, **extra: Any) -> str:
        return make_assertion(key or self.stack.clients[client_id], issuer=issuer or client_id,
                              subject=client_id, audience=audience or f"{self.url}/token",
                              now=int(time.time()) if now is None else now, ttl=ttl,
                              extra=extra or None)

    def auth(self, client_id: str, **kw: Any) -> dict[str, str]:
        """Client-authentication form fields with a fresh ``private_key_jwt`` assertion."""
        return {"client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": self.assertion(client_id, **kw), "client_id": client_id}

    def exchange_form(self, subject_token: str, **fields: str) -> dict[str, str]:
        return {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
                "subject_token_type": TOKEN_TYPE_ACCESS, **fields}

    def exchange(self, client_id: str, subject_token: str, **fields: str) -> httpx.Response:
        """POST an RFC 8693 exchange as ``client_id``; the raw answer."""
        return self.post("/token", {**self.auth(client_id),
                                    **self.exchange_form(subject_token, **fields)})

    def grant_form(self, user: str, ctx: Context, *, scopes: list[str] | None = None,
                   first_agent: str = INFRABOT, key: SigningKey | None = None,
                   ttl: int = 60) -> dict[str, str]:
        grant = make_assertion(key or self.stack.clients[ORCH], issuer=ORCH, subject=user,
                               audience=f"{self.url}/token", now=int(time.time()), ttl=ttl,
                               extra={"ctx": ctx.model_dump()})
        return {"grant_type": GRANT_JWT_BEARER, "assertion": grant,
                "scope": " ".join(scopes or WORKFLOW_SCOPES), "audience": first_agent}

    def introspect(self, token: str, client_id: str = ORCH) -> httpx.Response:
        return self.post("/introspect", {**self.auth(client_id), "token": token})

    # -- the happy path through the real client ---------------------------------------------------

    def ctx(self, trigger: str = "ci_pipeline", environment: str = "prod", **kw: str) -> Context:
        """A context with a run id of its own, so runs never collide across tests."""
        values = {"repository": "acme/service-x", "commit": "9f2c1e7",
                  "run_id": f"run-{uuid.uuid4().hex[:12]}"} | kw
        return Context(trigger=trigger, environment=environment, **values)

    def root(self, user: str = "user:sam", scopes: list[str] | None = None,
             ctx: Context | None = None, first_agent: str = INFRABOT) -> dict[str, Any]:
        return self.clients[ORCH].root_token(user, scopes or WORKFLOW_SCOPES, ctx or self.ctx(),
                                             first_agent)

    def chain(self, ctx: Context | None = None) -> list[str]:
        """DESIGN.md's chain: root, InfraBot -> ArgoCD, ArgoCD -> CleanupAgent, the AWS token."""
        root = self.root(ctx=ctx)["access_token"]
        h1 = self.clients[INFRABOT].exchange(root, audience=ARGOCD)["access_token"]
        h2 = self.clients[ARGOCD].exchange(h1, audience=CLEANUP)["access_token"]
        aws = self.clients[CLEANUP].exchange(h2, resource=self.aws)["access_token"]
        return [root, h1, h2, aws]

    # -- minting and forging with the server's own keys --------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims of a root hand-off token to InfraBot, issued now; ``None`` drops a claim."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer, "sub": "user:sam", "aud": self.issuer, "client_id": ORCH,
            "scope": "urn:infra:deploy:create urn:infra:monitoring:read",
            "iat": now, "exp": now + 600, "jti": new_jti(), "may_act": {"sub": INFRABOT},
            "ctx": self.ctx().model_dump(),
        }
        if "user_version" not in overrides or "registry_epoch" not in overrides:
            standing = self.stack.revocation.standing(overrides.get("sub", "user:sam"))
            base["user_version"] = standing.user_version
            base["registry_epoch"] = standing.registry_epoch
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    @property
    def key(self) -> SigningKey:
        return self.stack.keyring.current

    def header(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"alg": self.key.alg, "typ": "at+jwt", "kid": self.key.kid}
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, payload: object, *, header: dict[str, Any] | None = None,
             key: SigningKey | None = None) -> str:
        """Sign anything with the issuer's current key (or ``key``): a real signature."""
        return sign_raw(self.header() if header is None else header, payload, key or self.key)

    def mint(self, **overrides: Any) -> str:
        return self.sign(self.claims(**overrides))

    # -- the audit store ---------------------------------------------------------------------------

    def audit_mark(self) -> int:
        return max((r.id for r in self.stack.audit.query()), default=0)

    def records_since(self, mark: int) -> list[StoredRecord]:
        return [r for r in self.stack.audit.query() if r.id > mark]

    def assert_denied(self, mark: int, reason: str, *sent: str) -> StoredRecord:
        """Exactly one new audit record, a ``deny`` with ``reason``; nothing ``sent`` is stored."""
        new = self.records_since(mark)
        assert [(r.decision, r.reason) for r in new] == [("deny", reason)], new
        assert new[0].service == "authserver"
        self.assert_not_stored(*sent)
        return new[0]

    def assert_not_stored(self, *secrets: str) -> None:
        """No token or assertion sent appears anywhere in the audit database files."""
        db = self.settings.audit_db
        data = b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal"))
                        if p.exists())
        for secret in secrets:
            if not secret:
                continue
            assert secret.encode() not in data
            signature = secret.rsplit(".", 1)[-1]
            if len(signature) >= 32:
                assert signature.encode() not in data


@contextlib.contextmanager
def serve(state_dir: Path, *, revocation: RevocationStore | None = None,
          **overrides: Any) -> Iterator[AuthServer]:
    """The authorization server alone, on a loopback port the OS picked, until the block ends.

    DPoP binding (on by default) is off here unless a test turns it on: these tests send raw
    RFC 8693 forms and check the exchange rules on unbound tokens, the migration setting;
    ``test_dpop_*.py`` check binding, proofs and nonces with it on."""
    overrides.setdefault("dpop_binding", False)
    settings = Settings(state_dir=state_dir, auth_port=0, datadog_port=0, github_port=0,
                        aws_port=0, pagerduty_port=0, webhooks_port=0, **overrides)
    settings, sockets = bind_ports(settings)
    group = ServerGroup()
    stack: Stack | None = None
    http: httpx.Client | None = None
    clients: dict[str, AuthClient] = {}
    try:
        stack = Stack.build(settings, revocation=revocation or MemoryRevocationStore())
        group.add(create_app(stack.auth), sockets.pop("auth"))
        while sockets:  # the services' ports only name their audiences here
            sockets.popitem()[1].close()
        group.start()
        http = httpx.Client(timeout=10.0)
        clients = {cid: AuthClient(settings.auth_url, cid, stack.clients[cid])
                   for cid in IDENTITIES}
        yield AuthServer(settings, stack, http, clients)
    finally:
        for client in clients.values():
            client.close()
        if http is not None:
            http.close()
        group.stop()
        for sock in sockets.values():
            sock.close()
        if stack is not None:
            stack.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """One server per module, with the in-process revocation registry."""
    with serve(tmp_path_factory.mktemp("authserver")) as srv:
        yield srv


# The federated root's server: what a person's identity-provider token may root a run with.
FEDERATED_SCOPES = ["urn:infra:deploy:create", "urn:infra:monitoring:read"]


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[AuthServer, IdPServer]]:
    """One server per module whose directory trusts one stand-in Keycloak, and that Keycloak."""
    tmp = tmp_path_factory.mktemp("federated")
    with IdPServer([Vendor("keycloak", "keycloak/realms/acme", [rsa_key("kc-1")])]) as idp:
        entries = {"keycloak": {"issuer": idp.issuer("keycloak"), "profile": "keycloak",
                                "discovery_url": idp.discovery_url("keycloak"),
                                "audience": AUDIENCE,
                                "roles": {"infra-deployer": FEDERATED_SCOPES}}}
        with serve(tmp / "state", workflows_dir=workflows_with(tmp / "wf", entries)) as srv:
            yield srv, idp


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """One server per module on the real Redis registry (request it through ``store_server``,
    which checks Redis answers and flushes db 15 first)."""
    url = os.environ.get("INFRABOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        with serve(tmp_path_factory.mktemp("authserver-redis"),
                   revocation=RedisRevocationStore(client)) as srv:  # type: ignore[arg-type]
            yield srv
    finally:
        client.close()


@pytest.fixture(scope="module")
def registry_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server whose Redis registry does not answer (nothing listens on port 1)."""
    client = redis.Redis.from_url("redis://127.0.0.1:1/15", socket_timeout=0.5,
                                  socket_connect_timeout=0.5)
    try:
        with serve(tmp_path_factory.mktemp("registry-down"),
                   revocation=RedisRevocationStore(client)) as srv:  # type: ignore[arg-type]
            yield srv
    finally:
        client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_server(request: pytest.FixtureRequest) -> AuthServer:
    """The module's server on each registry: in-process, then the real Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_url")  # skips (or fails on CI) without Redis; flushes db 15
        server: AuthServer = request.getfixturevalue("redis_server")
        return server
    server = request.getfixturevalue("server")
    return server
