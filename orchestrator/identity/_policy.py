"""The directory of users, agents, clients and services, and the context rules.

Loaded from ``workflows/directory.yaml``. Users hold permissions (URN scopes); agents have the
scopes they may ever be granted and the agents they may hand off to; services name the scopes
their routes use. The per-user revocation version is dynamic and lives in the revocation store.
"""

from __future__ import annotations

from pathlib import Path

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from orchestrator._yamlfile import load_model
from orchestrator.identity._claims import Context
from orchestrator.identity._scopes import is_scope, is_write

_USER = r"^user:[a-z0-9][a-z0-9_.-]{0,63}$"
_AGENT = r"^agent:[a-z0-9][a-z0-9_.-]{0,63}$"
_CLIENT = r"^(agent|client):[a-z0-9][a-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _scopes(values: tuple[str, ...]) -> tuple[str, ...]:
    bad = [v for v in values if not is_scope(v)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a scope of the form urn:infra:<area>:<verb>")
    return values


Scopes = Annotated[tuple[str, ...], AfterValidator(_scopes)]


class User(_Model):
    permissions: Scopes = ()
    disabled: bool = False


class Agent(_Model):
    allowed_scopes: Scopes
    hands_off_to: tuple[str, ...] = ()
    queue: str | None = None
    description: str = ""


class Client(_Model):
    """A non-agent client. ``trusted`` clients (the orchestrator) may obtain root user tokens."""

    trusted: bool = False


class Service(_Model):
    scopes: Scopes


class ContextRule(_Model):
    """In ``environment``, scopes of kind ``applies_to`` need ``trigger == require_trigger``."""

    environment: str
    require_trigger: str
    applies_to: str = Field("writes", pattern="^(writes|all)$")

    def permits(self, scope: str, ctx: Context) -> bool:
        if ctx.environment != self.environment or ctx.trigger == self.require_trigger:
            return True
        return self.applies_to == "writes" and not is_write(scope)


class Directory(_Model):
    users: dict[str, User] = {}
    agents: dict[str, Agent] = {}
    clients: dict[str, Client] = {}
    services: dict[str, Service] = {}
    context_rules: tuple[ContextRule, ...] = ()

    @model_validator(mode="after")
    def _check_names(self) -> Directory:
        for kind, names, pattern in (
            ("user", self.users, _USER),
            ("agent", self.agents, _AGENT),
            ("client", self.clients, _CLIENT),
        ):
            for name in names:
                if not re.match(pattern, name):
                    raise ValueError(f"{kind} id {name!r} must match {pattern}")
        for name, agent in self.agents.items():
            for target in agent.hands_off_to:
                if target not in self.agents or target == name:
                    raise ValueError(f"{name} hands off to {target!r}, which is not another agent")
        return self

    def context_permits(self, scope: str, ctx: Context) -> bool:
        return all(rule.permits(scope, ctx) for rule in self.context_rules)

    def context_allowed(self, scopes: frozenset[str], ctx: Context) -> frozenset[str]:
        return frozenset(s for s in scopes if self.context_permits(s, ctx))

    def client_ids(self) -> list[str]:
        return [*self.agents, *self.clients]


def load_directory(path: Path) -> Directory:
    """Load and validate a directory file; errors name the file and line."""
    return load_model(path, Directory)
