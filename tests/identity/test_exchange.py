"""The exchange rules of DESIGN.md section 3: ``decide`` for each hop and ``decide_root`` for a run."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
)
from orchestrator.identity import (
    AccessClaims,
    Actor,
    Directory,
    Grant,
    MayAct,
    VerifiedToken,
    decide,
    decide_root,
    is_write,
    mint,
)

from .conftest import (
    AWS,
    DATADOG,
    ISSUER,
    NOW,
    PAGERDUTY,
    WORKFLOW_SCOPES,
    Authority,
    make_ctx,
    make_issuance,
)

CLEAN = "urn:infra:infrastructure:clean"
INFRA_READ = "urn:infra:infrastructure:read"
TAG = "urn:infra:infrastructure:tag"
INCIDENT_READ = "urn:infra:incident:read"
RESOLVE = "urn:infra:incident:resolve"
DEPLOY = "urn:infra:deploy:create"
COMMENT = "urn:infra:deploy:comment"
MONITORING = "urn:infra:monitoring:read"
SECRETS = "urn:infra:secrets:manage"


def refused(error: type[OAuthError], code: str, reason: str,
            call: Callable[[], object]) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        call()
    assert type(info.value) is error
    assert info.value.code == code
    assert info.value.reason == reason
    return info.value


def grant(authority: Authority, subject: VerifiedToken, actor: str, *, now: int = NOW,
          **kw: Any) -> Grant:
    return decide(authority.request(subject, actor, **kw), authority.directory,
                  authority.issuance, now=now)


def root(authority: Authority, user: str = "user:sam", required: list[str] | None = None, *,
         now: int = NOW, **kw: Any) -> Grant:
    values: dict[str, Any] = {"ctx": make_ctx(), "first_agent": "agent:infrabot"} | kw
    return decide_root(user, WORKFLOW_SCOPES if required is None else required, values["ctx"],
                       values["first_agent"], authority.directory, authority.issuance,
                       client="client:orchestrator", user_version=values.get("user_version", 0),
                       registry_epoch=authority.epoch, now=now)


def subject_token(authority: Authority, **overrides: Any) -> VerifiedToken:
    """A subject token issued directly (for states ``decide_root`` would not produce)."""
    return authority.issue(AccessClaims.model_validate(authority.payload(**overrides)))


# --- the three-hop chain -------------------------------------------------------------------------

def test_three_hop_chain_ends_with_sam_as_principal_and_cleanup_as_actor(
        authority: Authority) -> None:
    *_, for_aws = authority.chain_to_aws()
    claims = for_aws.claims
    assert claims.sub == "user:sam"
    assert claims.chain() == ["agent:cleanup", "agent:argocd", "agent:infrabot", "user:sam"]
    assert claims.current_actor == "agent:cleanup"
    assert claims.client_id == "agent:cleanup"
    assert claims.aud == AWS
    assert claims.may_act is None
    assert claims.act == Actor(sub="agent:cleanup", act=Actor(
        sub="agent:argocd", act=Actor(sub="agent:infrabot")))


def test_each_hop_narrows_to_what_the_next_party_may_use(authority: Authority) -> None:
    root_token, to_argocd, to_cleanup, for_aws = authority.chain_to_aws()
    assert root_token.claims.scopes == frozenset(WORKFLOW_SCOPES)
    assert to_argocd.claims.scopes == {DEPLOY, INFRA_READ, TAG, CLEAN, INCIDENT_READ, RESOLVE}
    assert to_cleanup.claims.scopes == {INFRA_READ, CLEAN, INCIDENT_READ, RESOLVE}
    assert for_aws.claims.scopes == {INFRA_READ, CLEAN}
    for wider, narrower in [(root_token, to_argocd), (to_argocd, to_cleanup),
                            (to_cleanup, for_aws)]:
        assert narrower.claims.scopes <= wider.claims.scopes


def test_hand_off_tokens_are_for_the_authorization_server_and_name_the_next_agent(
        authority: Authority) -> None:
    root_token, to_argocd, to_cleanup, _ = authority.chain_to_aws()
    assert root_token.claims.may_act == MayAct(sub="agent:infrabot")
    assert root_token.claims.act is None
    assert to_argocd.claims.aud == ISSUER
    assert to_argocd.claims.may_act == MayAct(sub="agent:argocd")
    assert to_argocd.claims.chain() == ["agent:infrabot", "user:sam"]
    assert to_cleanup.claims.aud == ISSUER
    assert to_cleanup.claims.may_act == MayAct(sub="agent:cleanup")
    assert to_cleanup.claims.chain() == ["agent:argocd", "agent:infrabot", "user:sam"]


def test_ancestors_accumulate_every_token_exchanged_from(authority: Authority) -> None:
    tokens = authority.chain_to_aws()
    jtis = [t.claims.jti for t in tokens]
    assert len(set(jtis)) == 4
    assert [t.claims.ancestors for t in tokens] == [
        (), (jtis[0],), (jtis[0], jtis[1]), (jtis[0], jtis[1], jtis[2])]


def test_context_user_version_and_epoch_are_carried_unchanged(authority: Authority) -> None:
    ctx = make_ctx(run_id="run-42", commit="abc1234")
    authority.epoch = "epoch-carried-01"
    subject = authority.root(ctx=ctx, user_version=3)
    issued = grant(authority, subject, "agent:infrabot", audience="agent:argocd").claims
    assert issued.ctx == ctx
    assert issued.user_version == 3
    assert issued.registry_epoch == subject.claims.registry_epoch == "epoch-carried-01"
    assert issued.iss == ISSUER


def test_issued_token_points_at_revocation_and_its_own_log(authority: Authority) -> None:
    claims = grant(authority, authority.root(), "agent:infrabot", audience="agent:argocd").claims
    assert claims.revocation_url == f"{ISSUER}/revoke"
    assert claims.log_url == f"{ISSUER}/audit?jti={claims.jti}"


def test_the_requested_scope_is_granted_exactly(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    claims = grant(authority, to_cleanup, "agent:cleanup", resource=AWS, scopes=[CLEAN]).claims
    assert claims.scope == CLEAN


def test_no_scope_requested_gives_everything_grantable(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    claims = grant(authority, to_cleanup, "agent:cleanup", resource=PAGERDUTY).claims
    assert claims.scopes == {INCIDENT_READ, RESOLVE}


def test_a_resource_with_a_trailing_slash_is_the_same_service(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    assert grant(authority, to_cleanup, "agent:cleanup", resource=AWS + "/").claims.aud == AWS


# --- lifetime ------------------------------------------------------------------------------------

def test_lifetime_is_the_configured_ttl_when_the_subject_has_longer(authority: Authority) -> None:
    subject = authority.root()
    authority.issuance = make_issuance(ttl=300)
    claims = grant(authority, subject, "agent:infrabot", audience="agent:argocd",
                   now=NOW + 10).claims
    assert claims.iat == NOW + 10
    assert claims.exp == NOW + 310
    assert claims.exp < subject.claims.exp


def test_exp_never_extends_past_the_subject_token(authority: Authority) -> None:
    subject = authority.root()
    later = subject.claims.exp - 30
    claims = grant(authority, subject, "agent:infrabot", audience="agent:argocd", now=later).claims
    assert claims.iat == later
    assert claims.exp == subject.claims.exp


def test_exp_never_extends_along_the_chain(authority: Authority) -> None:
    subject = authority.root()
    exps = [subject.claims.exp]
    for step, (actor, target) in enumerate([("agent:infrabot", "agent:argocd"),
                                            ("agent:argocd", "agent:cleanup")]):
        now = NOW + 200 * (step + 1)
        subject = authority.exchange(subject, actor, audience=target, now=now)
        exps.append(subject.claims.exp)
    assert exps == sorted(exps)
    assert exps[-1] == exps[0]


def test_root_lifetime_is_the_configured_ttl(authority: Authority) -> None:
    claims = root(authority).claims
    assert (claims.iat, claims.exp) == (NOW, NOW + authority.issuance.ttl)


# --- refusals: who may exchange ------------------------------------------------------------------

def test_more_scope_than_grantable_is_refused_not_trimmed(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    error = refused(InvalidScope, "invalid_scope", "scope_not_grantable", lambda: grant(
        authority, to_cleanup, "agent:cleanup", resource=AWS, scopes=[CLEAN, SECRETS]))
    assert SECRETS in error.message


@pytest.mark.parametrize(
    ("scope", "why"),
    [
        (SECRETS, "held by Sam, needed by no workflow, never in the chain"),
        (TAG, "in the subject token, but CleanupAgent may never hold it"),
        (RESOLVE, "held by the subject and CleanupAgent, but not used by AWS"),
        ("urn:infra:infrastructure:destroy", "exists nowhere"),
        ("not a scope", "malformed"),
    ],
)
def test_cleanup_cannot_escalate(authority: Authority, scope: str, why: str) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    refused(InvalidScope, "invalid_scope", "scope_not_grantable", lambda: grant(
        authority, to_cleanup, "agent:cleanup", resource=AWS, scopes=[scope]))


def test_an_empty_scope_request_is_invalid_scope(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    refused(InvalidScope, "invalid_scope", "malformed_scope", lambda: grant(
        authority, to_cleanup, "agent:cleanup", resource=AWS, scopes=[]))


def test_nothing_grantable_is_invalid_scope(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    refused(InvalidScope, "invalid_scope", "no_grantable_scope", lambda: grant(
        authority, to_cleanup, "agent:cleanup", resource=DATADOG))


def test_a_token_without_may_act_cannot_be_exchanged(authority: Authority) -> None:
    *_, for_aws = authority.chain_to_aws()
    refused(InvalidRequest, "invalid_request", "may_act_missing", lambda: grant(
        authority, for_aws, "agent:cleanup", resource=AWS))


def test_a_root_token_without_may_act_cannot_be_exchanged(authority: Authority) -> None:
    subject = subject_token(authority, may_act=None)
    refused(InvalidRequest, "invalid_request", "may_act_missing", lambda: grant(
        authority, subject, "agent:infrabot", audience="agent:argocd"))


@pytest.mark.parametrize("actor", ["agent:argocd", "agent:cleanup"])
def test_only_the_agent_named_in_may_act_can_exchange(authority: Authority, actor: str) -> None:
    refused(InvalidRequest, "invalid_request", "may_act_mismatch", lambda: grant(
        authority, authority.root(), actor, resource=AWS))


def test_a_hand_off_token_is_not_usable_by_the_agent_that_received_it_earlier(
        authority: Authority) -> None:
    _, to_argocd, _, _ = authority.chain_to_aws()
    refused(InvalidRequest, "invalid_request", "may_act_mismatch", lambda: grant(
        authority, to_argocd, "agent:infrabot", resource=AWS))


@pytest.mark.parametrize("actor", ["user:sam", "client:orchestrator", "agent:unknown", ""])
def test_the_actor_must_be_an_agent(authority: Authority, actor: str) -> None:
    subject = subject_token(authority, may_act={"sub": "agent:infrabot"})
    refused(InvalidRequest, "invalid_request", "not_an_agent", lambda: grant(
        authority, subject, actor, resource=AWS))


def test_an_actor_may_not_appear_twice(authority: Authority) -> None:
    subject = subject_token(authority, act={"sub": "agent:infrabot"},
                            may_act={"sub": "agent:infrabot"})
    refused(InvalidRequest, "invalid_request", "actor_repeated", lambda: grant(
        authority, subject, "agent:infrabot", resource=AWS))


def test_the_chain_may_not_exceed_max_depth(authority: Authority) -> None:
    authority.issuance = make_issuance(max_depth=2)
    root_token = authority.root()
    to_argocd = authority.exchange(root_token, "agent:infrabot", audience="agent:argocd")
    to_cleanup = authority.exchange(to_argocd, "agent:argocd", audience="agent:cleanup")
    assert to_cleanup.claims.depth == 2
    refused(InvalidRequest, "invalid_request", "max_depth_exceeded", lambda: grant(
        authority, to_cleanup, "agent:cleanup", resource=AWS))


# --- refusals: the target ------------------------------------------------------------------------

@pytest.mark.parametrize("resource", ["http://127.0.0.1:9999", "http://127.0.0.1:8703/admin",
                                      ISSUER, "agent:argocd", ""])
def test_an_unknown_resource_is_invalid_target(authority: Authority, resource: str) -> None:
    refused(InvalidTarget, "invalid_target", "unknown_resource", lambda: grant(
        authority, authority.root(), "agent:infrabot", resource=resource))


def test_a_resource_unknown_to_the_directory_is_invalid_target(authority: Authority) -> None:
    authority.issuance = make_issuance(services={AWS: "aws", "http://127.0.0.1:8799": "gone"})
    refused(InvalidTarget, "invalid_target", "unknown_resource", lambda: grant(
        authority, authority.root(), "agent:infrabot", resource="http://127.0.0.1:8799"))


def test_an_unknown_agent_audience_is_invalid_target(authority: Authority) -> None:
    refused(InvalidTarget, "invalid_target", "unknown_audience", lambda: grant(
        authority, authority.root(), "agent:infrabot", audience="agent:mallory"))


@pytest.mark.parametrize("target", [{"resource": AWS, "audience": "agent:argocd"}, {}])
def test_exactly_one_of_resource_and_audience(authority: Authority,
                                              target: dict[str, str]) -> None:
    refused(InvalidRequest, "invalid_request", "target_required", lambda: grant(
        authority, authority.root(), "agent:infrabot", **target))


def test_hand_off_must_follow_the_directory(authority: Authority) -> None:
    refused(InvalidTarget, "invalid_target", "handoff_not_allowed", lambda: grant(
        authority, authority.root(), "agent:infrabot", audience="agent:cleanup"))


def test_cleanup_hands_off_to_nobody(authority: Authority) -> None:
    *_, to_cleanup, _ = authority.chain_to_aws()
    refused(InvalidTarget, "invalid_target", "handoff_not_allowed", lambda: grant(
        authority, to_cleanup, "agent:cleanup", audience="agent:infrabot"))


def test_hand_off_scope_is_limited_to_what_the_next_agent_may_hold(authority: Authority) -> None:
    refused(InvalidScope, "invalid_scope", "scope_not_grantable", lambda: grant(
        authority, authority.root(), "agent:infrabot", audience="agent:argocd",
        scopes=[MONITORING]))


# --- context rules -------------------------------------------------------------------------------

def test_manual_trigger_in_prod_drops_write_scopes_at_the_root(authority: Authority) -> None:
    result = root(authority, ctx=make_ctx(trigger="manual", environment="prod"))
    assert result.claims.scopes == {s for s in WORKFLOW_SCOPES if not is_write(s)}
    assert set(result.dropped) == {s for s in WORKFLOW_SCOPES if is_write(s)}
    assert list(result.dropped) == [s for s in WORKFLOW_SCOPES if is_write(s)]


def test_manual_trigger_outside_prod_keeps_write_scopes(authority: Authority) -> None:
    result = root(authority, ctx=make_ctx(trigger="manual", environment="staging"))
    assert result.claims.scopes == frozenset(WORKFLOW_SCOPES)
    assert result.dropped == ()


def test_ci_trigger_in_prod_keeps_write_scopes(authority: Authority) -> None:
    assert root(authority).dropped == ()


def test_write_scope_requested_on_a_manual_prod_token_is_invalid_scope(
        authority: Authority) -> None:
    subject = subject_token(authority, scope=f"{MONITORING} {COMMENT}",
                            ctx=make_ctx(trigger="manual").model_dump())
    refused(InvalidScope, "invalid_scope", "scope_not_grantable", lambda: grant(
        authority, subject, "agent:infrabot", resource="http://127.0.0.1:8702",
        scopes=[COMMENT]))


def test_write_scopes_are_left_out_silently_when_none_are_requested_on_manual_prod(
        authority: Authority) -> None:
    subject = subject_token(authority, scope=f"{MONITORING} urn:infra:monitoring:mute",
                            ctx=make_ctx(trigger="manual").model_dump())
    claims = grant(authority, subject, "agent:infrabot", resource=DATADOG).claims
    assert claims.scopes == {MONITORING}


def test_context_rules_can_apply_to_reads_too(authority: Authority) -> None:
    directory = Directory.model_validate({
        **authority.directory.model_dump(),
        "context_rules": [{"environment": "prod", "require_trigger": "ci_pipeline",
                           "applies_to": "all"}],
    })
    authority.directory = directory
    refused(InvalidScope, "invalid_scope", "no_grantable_scope", lambda: root(
        authority, ctx=make_ctx(trigger="manual")))


# --- decide_root ---------------------------------------------------------------------------------

def test_root_grant_is_what_the_workflow_needs_and_the_user_holds(authority: Authority) -> None:
    result = root(authority, required=[MONITORING, COMMENT, SECRETS, "urn:infra:repo:read"],
                  user_version=2)
    claims = result.claims
    assert claims.scopes == {MONITORING, COMMENT, SECRETS, "urn:infra:repo:read"}
    assert claims.sub == "user:sam"
    assert claims.aud == ISSUER
    assert claims.client_id == "client:orchestrator"
    assert claims.may_act == MayAct(sub="agent:infrabot")
    assert claims.act is None
    assert claims.ancestors == ()
    assert claims.user_version == 2


def test_root_grant_reference_article_example(authority: Authority) -> None:
    directory = Directory.model_validate({
        **authority.directory.model_dump(),
        "users": {"user:sam": {"permissions": [MONITORING, DEPLOY, SECRETS]}},
    })
    authority.directory = directory
    result = root(authority, required=[MONITORING, COMMENT])
    assert result.claims.scope == MONITORING
    assert result.dropped == (COMMENT,)


def test_root_drops_what_the_user_lacks(authority: Authority) -> None:
    result = root(authority, "user:alex", required=[MONITORING, DEPLOY, COMMENT, CLEAN])
    assert result.claims.scopes == {MONITORING, COMMENT}
    assert result.dropped == (DEPLOY, CLEAN)


@pytest.mark.parametrize("user", ["user:former-employee", "user:nobody", "agent:infrabot"])
def test_root_refuses_a_disabled_or_unknown_user(authority: Authority, user: str) -> None:
    refused(InvalidGrant, "invalid_grant", "unknown_user", lambda: root(authority, user))


def test_root_refuses_an_unknown_first_agent(authority: Authority) -> None:
    refused(InvalidTarget, "invalid_target", "unknown_audience", lambda: root(
        authority, first_agent="agent:mallory"))


def test_root_with_nothing_grantable_is_invalid_scope(authority: Authority) -> None:
    refused(InvalidScope, "invalid_scope", "no_grantable_scope", lambda: root(
        authority, "user:alex", required=[DEPLOY, CLEAN]))


def test_root_with_only_writes_on_a_manual_prod_run_is_invalid_scope(
        authority: Authority) -> None:
    refused(InvalidScope, "invalid_scope", "no_grantable_scope", lambda: root(
        authority, required=[DEPLOY, COMMENT], ctx=make_ctx(trigger="manual")))


def test_root_and_exchange_each_get_a_fresh_jti(authority: Authority) -> None:
    subject = authority.root()
    jtis = {grant(authority, subject, "agent:infrabot", audience="agent:argocd").claims.jti
            for _ in range(5)}
    jtis |= {root(authority).claims.jti for _ in range(5)}
    assert len(jtis) == 10


# -- RFC 8693 section 4.1: non-identity claims inside act are ignored, never carried on -----------

_IGNORED_IN_ACT = {"exp": NOW - 10_000, "nbf": NOW + 10_000, "iat": NOW + 10_000, "aud": AWS,
                   "scope": "urn:infra:secrets:manage", "client_id": "agent:cleanup"}


def test_non_identity_claims_inside_act_are_ignored_not_refused(authority: Authority) -> None:
    """An expired ``exp``, a future ``nbf``, a foreign ``aud`` or a wider ``scope`` inside
    ``act`` neither refuse the token nor count: only ``sub`` and the nesting are read."""
    token = authority.sign(authority.payload(
        client_id="agent:infrabot", may_act={"sub": "agent:argocd"},
        act={"sub": "agent:infrabot", **_IGNORED_IN_ACT}))
    claims = authority.verify(token).claims
    assert claims.act == Actor(sub="agent:infrabot")
    assert claims.chain() == ["agent:infrabot", "user:sam"]
    assert claims.public_view()["act"] == {"sub": "agent:infrabot"}


def test_ignored_act_claims_are_not_copied_into_the_exchanged_token(
        authority: Authority) -> None:
    inner = {"sub": "agent:infrabot", **_IGNORED_IN_ACT}
    token = authority.sign(authority.payload(
        client_id="agent:argocd", may_act={"sub": "agent:cleanup"},
        scope="urn:infra:infrastructure:read",
        act={"sub": "agent:argocd", **_IGNORED_IN_ACT, "act": inner}))
    subject = authority.verify(token)
    grant = decide(authority.request(subject, "agent:cleanup", resource=AWS),
                   authority.directory, authority.issuance, now=NOW)
    minted = mint(grant.claims, authority.key)
    act = json.loads(base64.urlsafe_b64decode(minted.split(".")[1] + "==="))["act"]
    assert act == {"sub": "agent:cleanup",
                   "act": {"sub": "agent:argocd", "act": {"sub": "agent:infrabot"}}}


# -- a join's hand-off (joined_tokens) ------------------------------------------------------------

CHAT_WRITE = "urn:infra:chat:write"
JOIN_SCOPES = [*WORKFLOW_SCOPES, CHAT_WRITE]


def _branches(authority: Authority, root: VerifiedToken,
              *agents: str) -> tuple[AccessClaims, ...]:
    """The fork point's (InfraBot's) hand-off to each agent, as it mints them at the fork."""
    scope = {"agent:argocd": [CLEAN], "agent:scanner": [CHAT_WRITE]}
    return tuple(authority.exchange(root, "agent:infrabot", audience=agent,
                                    scopes=scope[agent]).claims for agent in agents)


def test_a_join_continues_from_every_branch_of_the_fork(authority: Authority) -> None:
    root = authority.root(required=JOIN_SCOPES)
    joined = _branches(authority, root, "agent:argocd", "agent:scanner")
    token = authority.exchange(root, "agent:infrabot", audience="agent:cleanup",
                               joined=joined, scopes=[CLEAN])
    assert token.claims.may_act == MayAct(sub="agent:cleanup")
    assert token.claims.ancestors[-2:] == tuple(branch.jti for branch in joined)


@pytest.mark.parametrize("agents", [("agent:scanner",), ("agent:scanner", "agent:scanner")],
                         ids=["one branch", "one agent twice"])
def test_one_branch_is_no_join_and_no_way_past_hands_off_to(
        authority: Authority, agents: tuple[str, ...]) -> None:
    """InfraBot may not hand off to the notifier; the scanner may. Naming only the scanner's
    branch token would let InfraBot skip the scanner and hand off there itself."""
    root = authority.root(required=JOIN_SCOPES)
    with pytest.raises(InvalidTarget) as plain:
        authority.exchange(root, "agent:infrabot", audience="agent:notifier", scopes=[CHAT_WRITE])
    assert plain.value.reason == "handoff_not_allowed"
    with pytest.raises(InvalidRequest) as info:
        authority.exchange(root, "agent:infrabot", audience="agent:notifier",
                           joined=_branches(authority, root, *agents), scopes=[CHAT_WRITE])
    assert info.value.reason == "join_needs_branches"
