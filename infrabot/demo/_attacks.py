"""The demo's attack round: what an attacker or a confused agent tries against the running
system, and the refusal each one meets. Every attempt uses the real servers over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from infrabot.demo._audit_attack import rewrite_a_copy, shown
from infrabot.system import System
from orchestrator._dpop_signer import DPoPSigner
from orchestrator.audit import AuditStore, StoredRecord
from orchestrator.catalog import build_request
from orchestrator.ci import DELIVERY_HEADER, ROUTE, build_deployment_event, webhook_key
from orchestrator.client import AuthClient
from orchestrator.errors import OAuthError
from orchestrator.identity import (
    AccessClaims,
    Actor,
    Context,
    MayAct,
    delegator_signature,
    generate_private_key,
    mint,
    new_jti,
    signing_key_of,
    unverified_payload,
)
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
    # When the attempt ran, and the audit records written meanwhile (what the system recorded
    # of the attempt), so the summary proves each refusal was audited, not only answered.
    window: tuple[datetime, datetime] | None = None
    audit: tuple[StoredRecord, ...] = ()

    @property
    def audited(self) -> bool | None:
        """Whether the refusal itself is in the audit trail (a deny record of the attempt);
        None for an attempt that sends no request (the insider's rewrite of the database)."""
        if self.window is None:
            return None
        return any(r.decision == "deny" for r in self.audit)

    def with_audit(self, store: AuditStore) -> Attack:
        if self.window is None:
            return self
        since, until = self.window
        return replace(self, audit=tuple(store.query(since=since, until=until)))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                               if f.name not in ("window", "audit")}
        out["audited"] = self.audited
        out["audit"] = [r.model_dump(mode="json") for r in self.audit]
        return out


def _expect(name: str, attempt: str, expected: str, fn: Callable[[], tuple[int, str, str]]
            ) -> Attack:
    """Run one attempt; it must be refused with ``expected`` as its code or reason."""
    started = datetime.now(UTC)
    try:
        status, code, reason = fn()
    except OAuthError as exc:
        status, code, reason = exc.status, exc.code, exc.reason
    refused = status >= 400 and expected in (code, reason)
    return Attack(name, attempt, expected, refused, status, code, reason,
                  window=(started, datetime.now(UTC)))


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

    def _without_dpop_key(self, for_argocd: str) -> tuple[int, str, str]:
        """ArgoCD itself (its client key) exchanges the hand-off token meant for it, but proves
        a DPoP key of its own making instead of the one it registered (a copy of its client
        key and the token, without the agent's DPoP key)."""
        key = signing_key_of(generate_private_key("ES256"), "ES256")
        with AuthClient(self.system.stack.settings.auth_url, "agent:argocd",
                        self.system.stack.clients["agent:argocd"], http=self.http,
                        dpop=DPoPSigner(key)) as argocd:
            return _ok(argocd.exchange(for_argocd, audience="agent:cleanup"))

    def _call_aws(self, token: str, holder: str | None = None) -> tuple[int, str, str]:
        """Delete a tag at AWS with ``token``: as a bearer token, or, given its ``holder``, as a
        DPoP-bound one with a proof by the holder's DPoP key."""
        method, path, _, body = build_request("aws.ec2.delete_tags", {
            "Resources": ["i-0a1b2c3d4e5f60003"], "Tags": [{"Key": "deploy"}]})
        url = self.aws + path
        auth = (self.rt.dpop(holder).headers(method, url, token) if holder is not None
                else {"Authorization": f"Bearer {token}"})
        response = self.http.request(method, url, json=body, headers={
            **auth, "X-Request-Id": f"attack-{uuid.uuid4().hex[:8]}"})
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

    def _unsigned_chain(self, aws_token: str) -> tuple[int, str, str]:
        """CleanupAgent's own AWS token, re-signed with the issuer's real key (a well-signed
        token), whose delegation_chain says InfraBot handed off to ArgoCD, in a record InfraBot
        never signed: its delegator signature is the attacker's, presented with a proof by the
        bound DPoP key. The service checks each record against its delegator's registered key."""
        claims = AccessClaims.model_validate(unverified_payload(aws_token, max_bytes=65536))
        chain = list(claims.delegation_chain or ())
        if not chain:
            return 200, "none", "no_delegation_chain"
        attacker = signing_key_of(generate_private_key("ES256"), "ES256")
        first = chain[-1]
        chain[-1] = first.model_copy(
            update={"delegator_signature": delegator_signature(first, attacker)})
        forged = claims.model_copy(update={"delegation_chain": tuple(chain), "jti": new_jti()})
        return self._call_aws(mint(forged, self.system.stack.keyring.current), "agent:cleanup")

    def _replayed_delivery(self) -> tuple[int, str, str]:
        """sam's signed prod deployment, captured and sent again under a new X-GitHub-Delivery
        (the header the signature does not cover); the refusal must be in the audit trail."""
        headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=124,
                                               secret=webhook_key(self.system.settings))
        url = self.system.webhooks_url + ROUTE
        original = self.http.post(url, headers=headers, content=body)
        if original.status_code != 202:
            return original.status_code, "none", "original_not_accepted"
        replay_id = str(uuid.uuid4())
        replay = self.http.post(url, headers={**headers, DELIVERY_HEADER: replay_id},
                                content=body)
        data = replay.json()
        audited = [r for r in self.system.stack.audit.query(service="webhooks")
                   if r.request_id == replay_id and r.decision == "deny"]
        if not audited or audited[0].reason != data.get("reason"):
            return replay.status_code, str(data.get("error")), "refusal_not_audited"
        return replay.status_code, str(data.get("error")), str(data.get("reason"))

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
        return self._call_aws(token, "agent:cleanup")

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
            _expect("replayed CI delivery",
                    "sam's signed prod deployment sent again under a new delivery id",
                    "replayed_delivery", self._replayed_delivery),
        ]
        attacks.append(_expect("staging token against a prod resource",
                               "a staging run's CleanupAgent deletes a tag on an env=prod "
                               "instance", "environment_mismatch",
                               self._staging_token_against_prod))
        aws_token = cleanup.exchange(for_cleanup, resource=self.aws, scope=CLEAN)["access_token"]
        attacks.append(_expect("stolen service token",
                               "CleanupAgent's AWS token, copied from its process, replayed from "
                               "another one (no proof by the key it is bound to)",
                               "dpop_bound_token_as_bearer", lambda: self._call_aws(aws_token)))
        attacks.append(_expect("delegation chain its delegator never signed",
                               "a token signed with the issuer's own key whose delegation_chain "
                               "has InfraBot hand off to ArgoCD in a record InfraBot never signed",
                               "delegation_signature_invalid",
                               lambda: self._unsigned_chain(aws_token)))
        attacks.append(_expect("hand-off without the DPoP key",
                               "ArgoCD presents its own hand-off token with its client key but "
                               "a DPoP key other than the one it registered",
                               "dpop_key_mismatch", lambda: self._without_dpop_key(for_argocd)))
        self.system.orchestrator.auth.revoke_by(user="user:sam")
        attacks.append(_expect("call after the user is revoked",
                               "CleanupAgent uses a valid AWS token after sam is offboarded",
                               "user_revoked",
                               lambda: self._call_aws(aws_token, "agent:cleanup")))
        attacks.append(_expect("exchange after the user is revoked",
                               "ArgoCD tries to keep going with sam's delegation",
                               "user_revoked",
                               lambda: _ok(argocd.exchange(for_argocd, audience="agent:cleanup"))))
        if shown(self.system):  # a copy of the SQLite file
            attacks.append(rewritten_audit_record(self.system))
        return attacks


def rewritten_audit_record(system: System) -> Attack:
    """An insider rewrites a record in a copy of the audit database and recomputes the chain;
    ``audit verify`` (exit 1) must name it ``rewritten``."""
    what, report = rewrite_a_copy(system)
    found = [p for p in report.problems if p.kind == "rewritten"]
    return Attack("rewritten audit record",
                  f"an insider with write access to the audit database rewrites {what} and "
                  "recomputes the hash chain and the writer head", "rewritten",
                  refused=bool(found), status=1 if not report.ok else 0,
                  code="audit_verify_failed" if not report.ok else "audit_verify_passed",
                  reason=found[0].kind if found else None)


def _ok(result: dict[str, Any]) -> tuple[int, str, str]:
    return 200, "none", "accepted"
