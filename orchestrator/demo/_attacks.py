"""The demo's attack round: what an attacker or a confused agent tries against the running
system, and the refusal each one meets. Every attempt uses the real servers over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mock_services.catalog import build_request
from orchestrator.errors import OAuthError
from orchestrator.identity import AccessClaims, Actor, Context, MayAct, mint, new_jti
from orchestrator.identity._keys import generate_private_key, signing_key_of
from orchestrator.system import System
from orchestrator.workflows import required_scopes

SECRETS = "urn:infra:secrets:manage"
CLEAN = "urn:infra:infrastructure:clean"


@dataclass(frozen=True)
class Attack:
    name: str
    attempt: str
    expected: str  # the error code (or reason) that must refuse it
    refused: bool
    status: int | None
    code: str | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _expect(name: str, attempt: str, expected: str, fn: Callable[[], tuple[int, str, str]]
            ) -> Attack:
    """Run one attempt; it must be refused with ``expected`` as its code or reason."""
    try:
        status, code, reason = fn()
    except OAuthError as exc:
        status, code, reason = exc.status, exc.code, exc.reason
    refused = status >= 400 and expected in (code, reason)
    return Attack(name, attempt, expected, refused, status, code, reason)


class AttackRound:
    def __init__(self, system: System) -> None:
        self.system = system
        self.rt = system.runtime
        self.http = system.runtime.http
        self.aws = system.stack.settings.service_url("aws")

    def _root(self, environment: str = "prod", trigger: str = "ci_pipeline") -> str:
        wf = self.rt.workflows["post-deploy"]
        ctx = Context(trigger=trigger, environment=environment, repository="acme/service-x",
                      commit="9f2c1e7", run_id=f"run-attack-{uuid.uuid4().hex[:8]}")
        result = self.system.orchestrator.auth.root_token("user:sam", required_scopes(wf), ctx,
                                                          wf.root_agent)
        return str(result["access_token"])

    def _chain(self) -> tuple[str, str]:
        """Hand-off tokens for ArgoCD and for CleanupAgent, obtained the legitimate way."""
        for_argocd = self.rt.auth("agent:infrabot").exchange(self._root(),
                                                             audience="agent:argocd")
        for_cleanup = self.rt.auth("agent:argocd").exchange(for_argocd["access_token"],
                                                            audience="agent:cleanup")
        return for_argocd["access_token"], for_cleanup["access_token"]

    def _call_aws(self, token: str) -> tuple[int, str, str]:
        method, path, _, body = build_request("aws.ec2.delete_tags", {
            "Resources": ["i-0a1b2c3d4e5f60003"], "Tags": [{"Key": "deploy"}]})
        response = self.http.request(method, self.aws + path, json=body, headers={
            "Authorization": f"Bearer {token}", "X-Request-Id": f"attack-{uuid.uuid4().hex[:8]}"})
        data = response.json() if response.content else {}
        return response.status_code, str(data.get("error")), str(data.get("reason"))

    def _signed(self, sub: str, actors: list[str], *, forged: bool = False) -> str:
        """A token with the issuer's current kid; signed by the real key unless ``forged``."""
        stack = self.system.stack
        real = stack.keyring.current
        key = real
        if forged:
            other = signing_key_of(generate_private_key(real.alg), real.alg)
            key = type(real)(kid=real.kid, alg=real.alg, private=other.private, public=real.public)
        act = None
        for actor in reversed(actors):
            act = Actor(sub=actor, act=act)
        standing = stack.revocation.standing(sub)
        now = int(time.time())
        claims = AccessClaims(
            iss=stack.settings.issuer_url, sub=sub, aud=self.aws, client_id=actors[0],
            scope=CLEAN, iat=now, exp=now + 300, jti=new_jti(), act=act,
            ctx=Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                        commit="9f2c1e7", run_id="run-attack-forged"),
            user_version=standing.user_version if sub.startswith("user:") else 0,
            registry_epoch=standing.registry_epoch,
            may_act=MayAct(sub="agent:cleanup") if not act else None)
        return mint(claims, key)

    def _staging_token_against_prod(self) -> tuple[int, str, str]:
        """A staging run's CleanupAgent, holding infrastructure:clean for AWS the legitimate
        way (CI-triggered, three hops), deletes a tag on a prod instance: the service checks the
        instance's own env tag, not the token's claim."""
        infrabot, argocd = self.rt.auth("agent:infrabot"), self.rt.auth("agent:argocd")
        staging = self._root(environment="staging")
        for_argocd = infrabot.exchange(staging, audience="agent:argocd")["access_token"]
        for_cleanup = argocd.exchange(for_argocd, audience="agent:cleanup")["access_token"]
        token = self.rt.auth("agent:cleanup").exchange(for_cleanup, resource=self.aws,
                                                       scope=CLEAN)["access_token"]
        return self._call_aws(token)

    def run(self, manual_prod: Callable[[], tuple[int, str, str]]) -> list[Attack]:
        cleanup, argocd = self.rt.auth("agent:cleanup"), self.rt.auth("agent:argocd")
        for_argocd, for_cleanup = self._chain()
        attacks = [
            _expect("scope escalation",
                    f"CleanupAgent exchanges its hand-off token for {SECRETS} at AWS",
                    "invalid_scope",
                    lambda: _ok(cleanup.exchange(for_cleanup, resource=self.aws, scope=SECRETS))),
            _expect("stolen hand-off token",
                    "CleanupAgent replays the hand-off token meant for ArgoCD",
                    "may_act_mismatch",
                    lambda: _ok(cleanup.exchange(for_argocd, resource=self.aws, scope=CLEAN))),
            _expect("hand-off token as a bearer",
                    "the hand-off token meant for ArgoCD is sent straight to AWS",
                    "audience_mismatch", lambda: self._call_aws(for_argocd)),
            _expect("manual trigger to prod",
                    "a workflow_dispatch run in prod tries to comment on the PR",
                    "scope_not_grantable", manual_prod),
            _expect("forged token", "a token signed by an attacker's key under the real kid",
                    "bad_signature",
                    lambda: self._call_aws(self._signed(
                        "user:sam", ["agent:cleanup", "agent:argocd", "agent:infrabot"],
                        forged=True))),
            _expect("inverted chain",
                    "a correctly signed token in the article's form: sub agent, act user",
                    "inverted_chain",
                    lambda: self._call_aws(self._signed("agent:infrabot", ["user:sam"]))),
            _expect("chain past the depth limit",
                    f"a correctly signed token with 5 actors (limit "
                    f"{self.system.settings.max_depth})", "max_depth_exceeded",
                    lambda: self._call_aws(self._signed(
                        "user:sam", [f"agent:relay-{i}" for i in range(5)]))),
        ]
        attacks.append(_expect("staging token against a prod resource",
                               "a staging run's CleanupAgent deletes a tag on an env=prod "
                               "instance", "environment_mismatch",
                               self._staging_token_against_prod))
        aws_token = cleanup.exchange(for_cleanup, resource=self.aws, scope=CLEAN)["access_token"]
        self.system.orchestrator.auth.revoke_by(user="user:sam")
        attacks.append(_expect("call after the user is revoked",
                               "CleanupAgent uses a valid AWS token after sam is offboarded",
                               "user_revoked", lambda: self._call_aws(aws_token)))
        attacks.append(_expect("exchange after the user is revoked",
                               "ArgoCD tries to keep going with sam's delegation",
                               "user_revoked",
                               lambda: _ok(argocd.exchange(for_argocd, audience="agent:cleanup"))))
        return attacks


def _ok(result: dict[str, Any]) -> tuple[int, str, str]:
    return 200, "none", "accepted"
