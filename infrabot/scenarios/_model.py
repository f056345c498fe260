"""The scenario file: an event, optional changes to the directory and workflows, and what must
happen (``workflows/scenarios/*.yaml``).

::

    name: cleanup-cannot-escalate           # [a-z][a-z0-9-]*, unique in the folder
    description: ...
    event:                                  # sent as a signed GitHub-style webhook
      type: deployment                      # deployment | workflow_run (default deployment)
      user: sam                             # a login or a directory id (user:sam)
      environment: prod
      trigger: ci_pipeline                  # ci_pipeline | manual (default ci_pipeline)
      service: service-x                    # default service-x
      commit: 9f2c1e7                       # default 9f2c1e7
      pr: 124                               # default 124
      task: rollback                        # deployment task (default deploy)
      creator: sam                          # who created the deployment (default: the CI app
                                            #   for ci_pipeline, else the user)
    workflow: rollback                      # optional: route the event to this workflow
    changes:                                # optional, applied to a private copy
      max_depth: 2
      users: {user:sam: {permissions: [...], disabled: true}}
      agents: {agent:cleanup: {allowed_scopes: [...]}}
      context_rules: [{environment: prod, require_trigger: ci_pipeline, applies_to: writes}]
      hand_off_scopes: {agent:argocd: [urn:infra:incident:resolve]}
      values: {post-deploy: {staging: {deployment_id: 9001}}}
      revoke: {after: agent:infrabot}       # revoke the event's user mid-run
      replay: {token_of: agent:argocd, by: agent:scanner}   # a sibling branch's token, replayed
      metrics: {trace.http.request.duration: 900}   # mock Datadog answers this value, every
                                            #   scope: a latency regression on demand
    expect:
      webhook: {status: 403, reason: user_disabled}   # default: 202 accepted
      workflow: post-deploy
      status: denied                        # the run's terminal status
      reason: scope_not_grantable           # a substring of the run's terminal reason
      root: {granted_excludes: [urn:infra:secrets:manage], dropped: [...]}
      never_granted: [urn:infra:secrets:manage]       # in no token of the run
      hops:
        agent:infrabot:                     # every exchange the agent made, in order
          - {step: datadog.metrics.query, exchange: allow, call: allow}
          - {step: hand_off, exchange: deny, error: invalid_scope, reason: scope_not_grantable}
        agent:argocd: not_run
      replay: {exchange: deny, error: invalid_request, reason: may_act_mismatch}

Fields an expectation leaves out are not checked. ``users`` and ``agents`` entries change only the
fields given (a user not in the directory is added). ``context_rules`` replaces the whole list.
``hand_off_scopes`` sets what an agent hands off in every workflow where it hands off.
``values`` replaces, per workflow and environment, the named values of the workflow's ``values:``.
``workflow`` routes the event there: when the event would start another workflow, the private
copy holds only the named one, its trigger widened to match the event.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from orchestrator.identity import ContextRule, is_scope
from orchestrator.workflows import Value

NAME = r"^[a-z][a-z0-9-]{0,63}$"
USER = r"^user:[a-z0-9][a-z0-9_.-]{0,63}$"
AGENT = r"^agent:[a-z0-9][a-z0-9_.-]{0,63}$"
HAND_OFF = "hand_off"
NOT_RUN = "not_run"
RUN_STATUSES = ("succeeded", "denied", "failed", "expired")


def _scope(value: str) -> str:
    if not is_scope(value):
        raise ValueError(f"{value!r} is not a scope of the form urn:infra:<area>:<verb>")
    return value


Scope = Annotated[str, AfterValidator(_scope)]
Scopes = tuple[Scope, ...]
UserId = Annotated[str, Field(pattern=USER)]
AgentId = Annotated[str, Field(pattern=AGENT)]
WorkflowName = Annotated[str, Field(pattern=NAME)]
Verdict = Literal["allow", "deny"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(_Model):
    """The CI event the scenario sends as a signed webhook."""

    type: Literal["deployment", "workflow_run"] = "deployment"
    user: str = Field(pattern=r"^(user:)?[a-z0-9][a-z0-9-]{0,38}$")
    environment: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    trigger: Literal["ci_pipeline", "manual"] = "ci_pipeline"
    service: str = Field("service-x", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    commit: str = Field("9f2c1e7", pattern=r"^[0-9a-f]{7,40}$")
    pr: int | None = Field(124, ge=1, le=10**9)
    task: str = Field("deploy", pattern=r"^[a-z][a-z0-9-]{0,63}$",
                      description="deployment events only: GitHub's deployment task")
    creator: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?$",
        description="deployment events only: who created the deployment (default: the CI app "
                    "for ci_pipeline, else the user); only a ci_apps login makes it CI")

    @model_validator(mode="after")
    def _creator_of_a_deployment(self) -> Event:
        if self.creator is not None and self.type != "deployment":
            raise ValueError("creator is a deployment's; a workflow_run has none")
        return self

    @property
    def login(self) -> str:
        return self.user.removeprefix("user:")

    @property
    def user_id(self) -> str:
        return f"user:{self.login}"


class UserChange(_Model):
    permissions: Scopes | None = None
    disabled: bool | None = None


class AgentChange(_Model):
    allowed_scopes: Scopes | None = None
    hands_off_to: tuple[AgentId, ...] | None = None


class Revocation(_Model):
    """Revoke mid-run, through the authorization server's ``/revocations``.

    ``after: root_grant`` revokes once the run's root token is issued, before the first agent is
    enqueued; ``after: agent:<name>`` once that agent's hand-off token is issued (a fan-out: its
    last, the join's), before the next agent is enqueued; with ``on_done: true``, once that
    agent's hop is recorded done instead (the last agent of a branch), before a join
    can start. ``what: user`` (default) revokes the
    event's user (or ``user``), ``what: run`` the run, ``what: hand_off`` the one token handed
    off to the agent ``to`` names (by its ``jti``: a branch's token).
    """

    after: Annotated[str, Field(pattern=r"^(root_grant|agent:[a-z0-9][a-z0-9_.-]{0,63})$")]
    on_done: bool = False
    what: Literal["user", "run", "hand_off"] = "user"
    user: UserId | None = None
    to: AgentId | None = None

    @model_validator(mode="after")
    def _names_the_token(self) -> Revocation:
        if (self.what == "hand_off") != (self.to is not None):
            raise ValueError("what: hand_off needs to: <agent>, and only it takes one")
        return self


class Replay(_Model):
    """Replay the token handed off to ``token_of`` (a fan-out's branch) as ``by`` (a sibling
    branch), at the authorization server, the moment the fan-out is published."""

    token_of: AgentId
    by: AgentId


class Changes(_Model):
    max_depth: int | None = Field(None, ge=1, le=16)
    users: dict[UserId, UserChange] = {}
    agents: dict[AgentId, AgentChange] = {}
    context_rules: tuple[ContextRule, ...] | None = None
    hand_off_scopes: dict[AgentId, Scopes] = {}
    values: dict[WorkflowName, dict[str, dict[str, Value]]] = {}
    metrics: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]{1,100}$")], float] = {}
    revoke: Revocation | None = None
    replay: Replay | None = None

    def system_key(self) -> str:
        """What the running system depends on (everything but the mid-run revocation)."""
        return self.model_dump_json(exclude={"revoke", "replay"})


class WebhookExpect(_Model):
    status: int = Field(202, ge=100, le=599)
    reason: str | None = Field(None, description="The answer's reason, or accepted / ignored.")


class StepExpect(_Model):
    """One exchange of a hop: a workflow step (its service call too) or the hand-off."""

    step: str = Field(pattern=r"^([a-z][a-z0-9]*(\.[A-Za-z0-9_]+)+|hand_off)$")
    to: AgentId | None = Field(None, description="A hand-off's agent (a fan-out has several).")
    exchange: Literal["allow", "deny", "skipped"] | None = None
    call: Literal["allow", "deny", "not_run"] | None = None
    reason: str | None = Field(None, description="The refusal's reason code.")
    error: str | None = Field(None, description="A refused exchange's RFC error code.")
    status: int | None = Field(None, ge=100, le=599, description="The call's HTTP status.")
    granted: Scopes | None = Field(None, description="The exchanged token's scopes, exactly.")

    @model_validator(mode="after")
    def _consistent(self) -> StepExpect:
        if self.step == HAND_OFF and (self.call is not None or self.status is not None):
            raise ValueError("a hand_off makes no service call")
        if self.exchange == "deny" and self.call in ("allow", "deny"):
            raise ValueError("a refused exchange is followed by no call")
        return self


Hop = Literal["not_run"] | tuple[StepExpect, ...]


class RootExpect(_Model):
    outcome: Literal["granted", "denied"] | None = None
    granted: Scopes | None = Field(None, description="Exactly these scopes, in any order.")
    granted_includes: Scopes = ()
    granted_excludes: Scopes = ()
    dropped: Scopes | None = Field(None, description="Exactly these, in any order.")
    error: str | None = None
    reason: str | None = None


class ReplayExpect(_Model):
    """What the authorization server answered the replayed sibling token."""

    exchange: Verdict
    error: str | None = None
    reason: str | None = None


class Expect(_Model):
    webhook: WebhookExpect = WebhookExpect()
    workflow: str | None = None
    status: Literal["succeeded", "denied", "failed", "expired"] | None = None
    reason: str | None = Field(None, description="A substring of the run's terminal reason.")
    root: RootExpect | None = None
    never_granted: Scopes = ()
    hops: dict[AgentId, Hop] = {}
    replay: ReplayExpect | None = None

    @property
    def expects_run(self) -> bool:
        return self.webhook.status == 202 and self.webhook.reason in (None, "accepted")

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        about_run = (self.workflow, self.status, self.reason, self.root)
        if not self.expects_run and (any(v is not None for v in about_run) or self.hops
                                     or self.never_granted):
            raise ValueError("expectations about a run need an accepted webhook (202)")
        if self.expects_run and self.status is None:
            raise ValueError("expect.status is required when the webhook starts a run")
        return self


class Scenario(_Model):
    name: str = Field(pattern=NAME)
    description: str = ""
    event: Event
    workflow: str | None = Field(None, pattern=NAME)
    changes: Changes = Changes()
    expect: Expect
