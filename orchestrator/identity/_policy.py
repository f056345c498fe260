"""The directory of users, agents, clients and services, and the context rules.

Read from ``workflows/directory.yaml`` by :func:`orchestrator.workflows.load_directory`. Users hold permissions (URN scopes); agents have the
scopes they may ever be granted and the agents they may hand off to; services name the scopes
their routes use. The per-user revocation version is dynamic and lives in the revocation store.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from orchestrator.identity._claims import Context
from orchestrator.identity._providers import IdentityProvider
from orchestrator.identity._scopes import is_scope, is_write

_USER = r"^user:[a-z0-9][a-z0-9_.-]{0,63}$"
_AGENT = r"^agent:[a-z0-9][a-z0-9_.-]{0,63}$"
_CLIENT = r"^(agent|client):[a-z0-9][a-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _scope(value: str) -> str:
    if not is_scope(value):
        raise ValueError(f"{value!r} is not a scope of the form urn:infra:<area>:<verb>")
    return value


def _not_by_hand(value: str) -> str:
    if value == "workflow_dispatch":
        raise ValueError("workflow_dispatch runs are started by a person, not by CI")
    return value


# Validated item by item (and ids as dict keys), so an error's location, and so the line a
# load error names, is the offending entry's.
Scopes = tuple[Annotated[str, AfterValidator(_scope)], ...]
UserId = Annotated[str, StringConstraints(pattern=_USER)]
AgentId = Annotated[str, StringConstraints(pattern=_AGENT)]
ClientId = Annotated[str, StringConstraints(pattern=_CLIENT)]
# A GitHub login (apps end in "[bot]"), compared case-insensitively; a workflow_run event kind.
CILogin = Annotated[str, StringConstraints(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?$", to_lower=True)]
CIEventKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,63}$"),
                        AfterValidator(_not_by_hand)]
# A git branch name as GitHub reports workflow_run.head_branch (no refs/heads/ prefix).
CIBranch = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]{1,255}$")]


class DirectoryEntryError(ValueError):
    """A cross-reference error that knows which entry of the directory it is about (``loc``),
    so that the loader can name the file's line (:func:`orchestrator.workflows.load_directory`)."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


class User(_Model):
    permissions: Scopes = ()
    disabled: bool = False


class Agent(_Model):
    """An agent exists because the directory declares it: its scopes, whom it may hand off
    to, and the broker queue its hops go to (default: its name without ``agent:``)."""

    allowed_scopes: Scopes
    hands_off_to: tuple[str, ...] = ()
    queue: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""


class Client(_Model):
    """A non-agent client. ``trusted`` clients (the orchestrator) may obtain root user tokens."""

    trusted: bool = False


class Service(_Model):
    """A service and the scopes its routes use. ``dpop``: whether it takes only DPoP-bound
    tokens (``required``), also unbound bearer tokens during a migration (``optional``), or
    what the deployment's default says (unset: ``INFRABOT_DPOP_BINDING``, on by default)."""

    scopes: Scopes
    dpop: Literal["required", "optional"] | None = None
    # Whether a delegated token must carry a delegation_chain confirmed by every delegator.
    delegation: Literal["required", "optional"] = "optional"

    def binding_required(self, default: bool) -> bool:
        """Whether a token for this service must be DPoP-bound."""
        return self.dpop == "required" or (self.dpop is None and default)


class ContextRule(_Model):
    """In ``environment``, scopes of kind ``applies_to`` need ``trigger == require_trigger``."""

    environment: str
    require_trigger: str
    applies_to: str = Field("writes", pattern="^(writes|all)$")

    def permits(self, scope: str, ctx: Context) -> bool:
        if ctx.environment != self.environment or ctx.trigger == self.require_trigger:
            return True
        return self.applies_to == "writes" and not is_write(scope)


class ResourceAttributes(_Model):
    """What owns a resource a service holds: the environment it runs in, the repository it is
    built from, the service it belongs to. ``None`` where the resource has no such owner (a pull
    request has no environment); ``ANY`` where a request names every value (an unscoped
    metric query), which never equals a token's context."""

    resource: str
    environment: str | None = None
    repository: str | None = None
    service: str | None = None


ANY = "*"  # an attribute a request leaves open: every environment, every service


class TargetMismatch(_Model):
    """A refusal of a request's target: the reason code and both values of the attribute."""

    reason: str
    attribute: str
    claimed: str
    actual: str


def mismatch_of(ctx: Context, target: ResourceAttributes) -> TargetMismatch | None:
    """The first owning attribute of ``target`` that is not the context's, or ``None``."""
    checks = (("environment", target.environment, ctx.environment),
              ("repository", target.repository, ctx.repository),
              ("service", target.service, service_of(ctx.repository)))
    for attribute, actual, claimed in checks:
        if actual is not None and actual != claimed:
            return TargetMismatch(reason=f"{attribute}_mismatch", attribute=attribute,
                                  claimed=claimed, actual=actual)
    return None


def service_of(repository: str) -> str:
    """The service a repository builds: ``acme/service-x`` builds ``service-x``."""
    return repository.rpartition("/")[2]


class Directory(_Model):
    users: dict[UserId, User] = {}
    agents: dict[AgentId, Agent] = {}
    clients: dict[ClientId, Client] = {}
    services: dict[str, Service] = {}
    context_rules: tuple[ContextRule, ...] = ()
    ci_apps: tuple[CILogin, ...] = Field((), description="Logins whose deployments are CI's.")
    ci_events: tuple[CIEventKind, ...] = Field(
        (), description="workflow_run event kinds that are CI's (never workflow_dispatch).")
    ci_branches: tuple[CIBranch, ...] | None = Field(
        None, description="Branches whose workflow_runs may be CI's (unset: any branch).")
    identity_providers: dict[str, IdentityProvider] = Field(
        {}, description="Trusted identity providers by name (docs/federation.md).")

    @model_validator(mode="after")
    def _check_hand_offs(self) -> Directory:
        for name, agent in self.agents.items():
            for index, target in enumerate(agent.hands_off_to):
                if target not in self.agents or target == name:
                    raise DirectoryEntryError(f"{name} hands off to {target!r}, which is not another "
                                        "agent", ("agents", name, "hands_off_to", index))
        seen: dict[str, str] = {}
        for name in self.agents:
            queue = self.queue_of(name)
            if queue in seen:
                raise DirectoryEntryError(f"{name} and {seen[queue]} share the queue {queue!r}",
                                    ("agents", name, "queue"))
            seen[queue] = name
        issuers = [p.issuer for p in self.identity_providers.values()]
        if len(set(issuers)) != len(issuers):
            raise ValueError("two identity providers name the same issuer")
        return self

    def queue_of(self, agent: str) -> str:
        """The broker queue ``agent``'s hops are published to."""
        return self.agents[agent].queue or agent.removeprefix("agent:").replace(".", "_")

    def queues(self) -> dict[str, str]:
        """Every declared agent's queue, by agent."""
        return {agent: self.queue_of(agent) for agent in self.agents}

    def agent_of_queue(self, queue: str) -> str | None:
        return next((a for a, q in self.queues().items() if q == queue), None)

    def providers_by_issuer(self) -> dict[str, IdentityProvider]:
        return {p.issuer: p for p in self.identity_providers.values()}

    def context_permits(self, scope: str, ctx: Context) -> bool:
        return all(rule.permits(scope, ctx) for rule in self.context_rules)

    def target_refusal(self, scope: str, ctx: Context,
                       target: ResourceAttributes) -> TargetMismatch | None:
        """Why a token rooted in ``ctx`` may not use ``scope`` on ``target``, or ``None``.

        The target's own attributes decide, not what the token claims: its environment must be
        the token's, its repository (or the service that repository builds) the token's, and the
        context rules are applied to the target's environment."""
        mismatch = mismatch_of(ctx, target)
        if mismatch is not None:
            return mismatch
        where = ctx.model_copy(update={"environment": target.environment or ctx.environment})
        broken = next((r for r in self.context_rules if not r.permits(scope, where)), None)
        if broken is not None:  # what the target's environment requires of the trigger
            return TargetMismatch(reason="context_forbidden", attribute="trigger",
                                  claimed=ctx.trigger, actual=broken.require_trigger)
        return None

    def context_allowed(self, scopes: frozenset[str], ctx: Context) -> frozenset[str]:
        return frozenset(s for s in scopes if self.context_permits(s, ctx))

    def is_ci_app(self, login: str | None) -> bool:
        return login is not None and login.lower() in self.ci_apps

    def is_ci_run(self, event: str | None, branch: str | None) -> bool:
        """A workflow_run started by a CI event kind, on a branch CI may deploy from."""
        return event in self.ci_events and (
            self.ci_branches is None or (branch is not None and branch in self.ci_branches))

    def client_ids(self) -> list[str]:
        return [*self.agents, *self.clients]
