"""Real loopback HTTP for the mock services: a stand-in authorization server publishing a
KeyRing's keys (RFC 8414 metadata + JWKS), the four services on their own ports, and tokens
minted directly with ``orchestrator.identity``.

Fixtures: ``stack`` (session-wide: auth stand-in + all four services, shared audit store and
in-memory revocation registry), ``stack_factory`` (a fresh stack with other settings, stopped at
teardown), ``http`` (an httpx client).
"""

from __future__ import annotations

import sys
from pathlib import Path

# pytest's prepend import mode puts tests/ on sys.path, where this directory (no __init__) would
# be imported as a namespace package shadowing the real `mock_services` (installed editable,
# found only after sys.path). Put the repository first and drop any shadow already imported.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response

from mock_services import (
    SERVICE_NAMES,
    ServiceDeps,
    create_declared_app,
    create_service_app,
    remote_key_source,
)
from mock_services._serve import reserve, serve_in_thread, url_of
from orchestrator.audit import AuditStore, StoredRecord
from orchestrator.catalog import actions_for, build_request, get_action
from orchestrator.config import Settings
from orchestrator.identity import (
    AccessClaims,
    Actor,
    Confirmation,
    Context,
    MemoryRevocationStore,
    RevocationStore,
    SigningKey,
    Standing,
    mint,
    new_jti,
)
from orchestrator.keystore import KeyRing
from orchestrator.services import DeclaredService
from orchestrator.workflows import load_directory


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class AuthStub:
    """The stand-in authorization server: publishes the ring's keys, counts JWKS fetches."""

    ring: KeyRing
    issuer: str
    jwks_fetches: int = 0
    failing: bool = False

    def app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.get("/.well-known/oauth-authorization-server")
        def metadata() -> dict[str, Any]:
            return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks.json",
                    "token_endpoint": f"{self.issuer}/token"}

        @app.get("/jwks.json")
        def jwks() -> Any:
            self.jwks_fetches += 1
            if self.failing:
                return Response(status_code=500)
            self.ring.refresh(now=int(time.time()))
            return self.ring.jwks().to_dict()

        return app


@dataclass
class Stack:
    settings: Settings
    ring: KeyRing
    revocation: RevocationStore
    audit: AuditStore
    auth: AuthStub
    urls: dict[str, str]
    apps: dict[str, FastAPI]
    stops: list[Callable[[], None]] = field(default_factory=list)

    def token(self, service: str = "datadog", *, scope: str | None = None,
              sub: str = "user:sam", actors: Sequence[str] = ("agent:infrabot",),
              client_id: str | None = None, aud: str | None = None, lifetime: int = 300,
              iat: int | None = None, ctx: dict[str, str] | None = None,
              ancestors: tuple[str, ...] = (), jti: str | None = None,
              key: SigningKey | None = None, user_version: int | None = None,
              registry_epoch: str | None = None, cnf: str | None = None) -> str:
        """A signed access token; defaults: sam via infrabot, every scope of ``service``;
        ``cnf``: the thumbprint of the DPoP key it is bound to."""
        issued = int(time.time()) if iat is None else iat
        standing = (Standing("", 0) if registry_epoch is not None and user_version is not None
                    else self.revocation.standing(sub))
        act: Actor | None = None
        for actor in reversed(actors):
            act = Actor(sub=actor, act=act)
        context = {"trigger": "ci_pipeline", "environment": "prod",
                   "repository": "acme/service-x", "commit": "9f2c1e7",
                   "run_id": f"run-{uuid.uuid4().hex[:12]}", **(ctx or {})}
        claims = AccessClaims(
            iss=self.settings.issuer_url, sub=sub, aud=aud or self.urls[service],
            client_id=client_id or (actors[0] if actors else "agent:infrabot"),
            scope=scope or " ".join(sorted({a.scope for a in actions_for(service)})),
            iat=issued, exp=issued + lifetime, jti=jti or new_jti(), act=act,
            ctx=Context(**context), ancestors=ancestors,
            user_version=standing.user_version if user_version is None else user_version,
            registry_epoch=registry_epoch or standing.registry_epoch,
            cnf=Confirmation(jkt=cnf) if cnf is not None else None,
        )
        return mint(claims, key or self.ring.current)

    def call(self, client: httpx.Client, action_name: str, params: dict[str, Any] | None = None,
             *, token: str | None = None, headers: dict[str, str] | None = None,
             **token_kwargs: Any) -> httpx.Response:
        """Perform a catalogue action; ``token=""`` sends no credential, ``None`` mints one."""
        action = get_action(action_name)
        method, path, query, body = build_request(action_name, params or {})
        sent = dict(headers or {})
        if token is None:
            token = self.token(action.service, **token_kwargs)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        return client.request(method, self.urls[action.service] + path, params=query, json=body,
                              headers=sent)

    def records(self, response: httpx.Response) -> list[StoredRecord]:
        """The audit records of one answered request (found by its X-Request-Id)."""
        request_id = response.headers["x-request-id"]
        return [r for r in self.audit.query() if r.request_id == request_id]

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()
        self.stops.clear()
        self.audit.close()


def start_stack(root: Path, *, services: Sequence[str] = SERVICE_NAMES,
                declared: Sequence[DeclaredService] = (), with_auth: bool = True,
                revocation: RevocationStore | None = None,
                key_clock: Callable[[], float] = time.monotonic,
                min_refresh_seconds: float = 5.0, clock: Callable[[], float] = time.time,
                **overrides: Any) -> Stack:
    # Unbound tokens as Bearer (DPoP binding off, the migration setting) unless a test turns
    # binding on: these tests check enforcement on the token itself; test_dpop_* check DPoP.
    overrides.setdefault("dpop_binding", False)
    auth_sock = reserve()
    socks = {name: reserve() for name in services}
    ports = {f"{name}_port": sock.getsockname()[1] for name, sock in socks.items()}
    own = {s.name: reserve() for s in declared}  # services from OpenAPI documents
    settings = Settings(state_dir=root, auth_port=auth_sock.getsockname()[1],
                        service_ports={n: sock.getsockname()[1] for n, sock in own.items()},
                        **ports, **overrides)
    ring = KeyRing.open(settings.keys_dir, settings.signing_alg, now=int(time.time()))
    auth = AuthStub(ring, settings.issuer_url)
    audit = AuditStore(settings.audit_target)
    stack = Stack(settings, ring, revocation or MemoryRevocationStore(), audit, auth, {}, {})
    try:
        if with_auth:
            stack.stops.append(serve_in_thread(auth.app(), sock=auth_sock)[1])
        else:
            auth_sock.close()  # nothing listens there: the key set is unreachable
        keys = remote_key_source(settings, clock=key_clock,
                                 min_refresh_seconds=min_refresh_seconds, timeout=1.0)
        # The stub mints delegated tokens without delegation records: no service here requires
        # a confirmed chain (test_delegation_at_services.py checks that policy).
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        directory = directory.model_copy(update={"services": {
            name: service.model_copy(update={"delegation": "optional"})
            for name, service in directory.services.items()}})
        deps = ServiceDeps(settings, keys, stack.revocation, directory, audit, clock)
        for name, sock in socks.items():
            stack.apps[name] = create_service_app(name, deps)
            stack.urls[name] = url_of(sock)
            stack.stops.append(serve_in_thread(stack.apps[name], sock=sock)[1])
        for service in declared:
            sock = own[service.name]
            stack.apps[service.name] = create_declared_app(service, deps)
            stack.urls[service.name] = url_of(sock)
            stack.stops.append(serve_in_thread(stack.apps[service.name], sock=sock)[1])
    except BaseException:
        stack.stop()
        for sock in [*socks.values(), *own.values()]:
            sock.close()
        raise
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = start_stack(tmp_path_factory.mktemp("stack"))
    yield built
    built.stop()


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        built = start_stack(tmp_path / f"stack{len(made)}", **kwargs)
        made.append(built)
        return built

    yield make
    for built in made:
        built.stop()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()
