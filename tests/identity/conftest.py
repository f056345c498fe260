"""Helpers to mint, exchange and forge tokens against a real key ring in ``tmp_path``."""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from jwt.algorithms import get_default_algorithms

from orchestrator.identity import (
    AccessClaims,
    Context,
    Directory,
    ExchangeRequest,
    Issuance,
    SigningKey,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    decide,
    decide_root,
    mint,
)
from orchestrator.identity._jws import canonical
from orchestrator.keystore import KeyRing

NOW = 1_764_400_000
ISSUER = "http://127.0.0.1:8700"
DATADOG = "http://127.0.0.1:8701"
GITHUB = "http://127.0.0.1:8702"
AWS = "http://127.0.0.1:8703"
PAGERDUTY = "http://127.0.0.1:8704"
SERVICES = {DATADOG: "datadog", GITHUB: "github", AWS: "aws", PAGERDUTY: "pagerduty"}
ALL_ALGS = ("ES256", "RS256", "EdDSA")

# What the post-deploy workflow needs (everything Sam holds except secrets:manage).
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


def make_ctx(trigger: str = "ci_pipeline", environment: str = "prod", **kw: str) -> Context:
    values = {"repository": "acme/service-x", "commit": "9f2c1e7", "run_id": "run-0001"} | kw
    return Context(trigger=trigger, environment=environment, **values)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def sign_raw(header: dict[str, Any], payload: object, key: SigningKey, *,
             alg: str | None = None) -> str:
    """A compact JWS built by hand: any header, any payload (object, or raw ``bytes``)."""
    body = b64(payload) if isinstance(payload, bytes) else b64json(payload)
    signing_input = f"{b64json(header)}.{body}".encode()
    name = alg or key.alg
    signature = canonical(name, get_default_algorithms()[name].sign(signing_input, key.private))
    return f"{signing_input.decode()}.{b64(signature)}"


def hmac_sign(header: dict[str, Any], payload: object, secret: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(payload)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, sha256).digest())}"


@dataclass
class Authority:
    """The issuer side and a verifier for it, over one key ring and the shipped directory."""

    ring: KeyRing
    directory: Directory
    issuance: Issuance
    policy: VerifierPolicy
    # the registry epoch its root tokens name; a test's registry must be in the same one
    epoch: str = "epoch-test-0001"

    @property
    def key(self) -> SigningKey:
        return self.ring.current

    @property
    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.ring.jwks(), self.policy)

    def verify(self, token: object, *, audience: str = ISSUER, now: int = NOW) -> VerifiedToken:
        return self.verifier.verify(token, audience=audience, now=now)

    def issue(self, claims: AccessClaims, *, now: int | None = None) -> VerifiedToken:
        """Mint and verify: the only way to obtain a :class:`VerifiedToken`."""
        return self.verify(mint(claims, self.key), audience=claims.aud,
                           now=claims.iat if now is None else now)

    def payload(self, **overrides: Any) -> dict[str, Any]:
        """A valid claims payload (a root hand-off token to InfraBot), with overrides;
        an override of ``None`` removes the claim."""
        base: dict[str, Any] = {
            "iss": ISSUER, "sub": "user:sam", "aud": ISSUER, "client_id": "client:orchestrator",
            "scope": "urn:infra:monitoring:read urn:infra:deploy:comment",
            "iat": NOW, "exp": NOW + 600, "jti": "jti-root-0001",
            "may_act": {"sub": "agent:infrabot"}, "ctx": make_ctx().model_dump(),
            "user_version": 0, "registry_epoch": self.epoch,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def header(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"alg": self.key.alg, "typ": "at+jwt", "kid": self.key.kid}
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, payload: object, *, header: dict[str, Any] | None = None,
             key: SigningKey | None = None) -> str:
        return sign_raw(self.header() if header is None else header, payload, key or self.key)

    def root(self, user: str = "user:sam", required: list[str] | None = None, *,
             ctx: Context | None = None, first_agent: str = "agent:infrabot", now: int = NOW,
             user_version: int = 0) -> VerifiedToken:
        grant = decide_root(user, WORKFLOW_SCOPES if required is None else required,
                            ctx or make_ctx(), first_agent, self.directory, self.issuance,
                            client="client:orchestrator", user_version=user_version,
                            registry_epoch=self.epoch, now=now)
        return self.issue(grant.claims)

    def request(self, subject: VerifiedToken, actor: str, **kw: Any) -> ExchangeRequest:
        scopes = kw.pop("scopes", None)
        return ExchangeRequest(subject=subject, actor=actor,
                               scopes=None if scopes is None else frozenset(scopes), **kw)

    def exchange(self, subject: VerifiedToken, actor: str, *, now: int = NOW,
                 **kw: Any) -> VerifiedToken:
        grant = decide(self.request(subject, actor, **kw), self.directory, self.issuance, now=now)
        return self.issue(grant.claims)

    def chain_to_aws(self) -> list[VerifiedToken]:
        """The DESIGN.md three-hop chain: root, InfraBot -> ArgoCD, ArgoCD -> CleanupAgent,
        CleanupAgent's token for AWS."""
        root = self.root()
        to_argocd = self.exchange(root, "agent:infrabot", audience="agent:argocd")
        to_cleanup = self.exchange(to_argocd, "agent:argocd", audience="agent:cleanup")
        for_aws = self.exchange(to_cleanup, "agent:cleanup", resource=AWS)
        return [root, to_argocd, to_cleanup, for_aws]


def make_issuance(**overrides: Any) -> Issuance:
    values: dict[str, Any] = {
        "issuer": ISSUER, "services": dict(SERVICES), "ttl": 600, "max_depth": 4,
        "revocation_url": f"{ISSUER}/revoke", "log_url": f"{ISSUER}/audit",
    }
    values.update(overrides)
    return Issuance(**values)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def ring(key_dir: Path) -> KeyRing:
    return KeyRing.open(key_dir, "ES256", now=NOW)


@pytest.fixture
def issuance() -> Issuance:
    return make_issuance()


@pytest.fixture
def authority(ring: KeyRing, directory: Directory, issuance: Issuance) -> Authority:
    return Authority(ring=ring, directory=directory, issuance=issuance,
                     policy=VerifierPolicy(issuer=ISSUER, allowed_algs=ALL_ALGS))

