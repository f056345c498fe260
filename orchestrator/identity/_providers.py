"""Trusted identity providers (``identity_providers:`` in the directory) and their claim-mapping
profiles: which claim names the user, how it becomes ``user:<name>``, which claims carry
permissions or roles (docs/federation.md).

A profile is the vendor's documented layout of an access token:

============ ======================= ====================================================
profile      user claim              permission claims
============ ======================= ====================================================
keycloak     ``preferred_username``  ``realm_access.roles``, ``resource_access.{audience}.roles``,
                                     ``scope``
auth0        ``sub``                 ``permissions``, ``scope``
entra        ``oid``                 ``roles``, ``scp``
okta         ``sub``                 ``scp``, ``groups``
generic      (``user_claim``)        (``permission_claims``)
============ ======================= ====================================================

Everything about a provider comes from this configuration, never from a token: its issuer, where
its keys are, its audience, the algorithms it may sign with.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from orchestrator.identity._scopes import is_scope

Profile = Literal["keycloak", "auth0", "entra", "okta", "generic"]
ProviderAlg = Literal["RS256", "ES256", "EdDSA"]
USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_USER = r"^user:[a-z0-9][a-z0-9_.-]{0,63}$"
_HTTP_URL = r"^https?://[^\s]{1,500}$"
# A claim path: dotted names, ``{audience}`` standing for the provider's audience.
_PATH = r"^[A-Za-z0-9_:/{}.|#-]{1,200}$"

# (user claim, permission claims) per vendor, from each vendor's token reference.
PROFILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "keycloak": ("preferred_username",
                 ("realm_access.roles", "resource_access.{audience}.roles", "scope")),
    "auth0": ("sub", ("permissions", "scope")),
    "entra": ("oid", ("roles", "scp")),
    "okta": ("sub", ("scp", "groups")),
}


def _scope(value: str) -> str:
    if not is_scope(value):
        raise ValueError(f"{value!r} is not a scope of the form urn:infra:<area>:<verb>")
    return value


Scope = Annotated[str, AfterValidator(_scope)]
UserId = Annotated[str, StringConstraints(pattern=_USER)]
ClaimPath = Annotated[str, StringConstraints(pattern=_PATH)]


class IdentityProvider(BaseModel):
    """One trusted issuer of user tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(pattern=_HTTP_URL, description="Compared exactly with a token's iss.")
    discovery_url: str | None = Field(None, pattern=_HTTP_URL,
                                      description="OpenID discovery document (names jwks_uri).")
    jwks_url: str | None = Field(None, pattern=_HTTP_URL, description="The JWKS itself.")
    audience: str = Field(min_length=1, max_length=500,
                          description="What a token's aud must contain.")
    profile: Profile
    algorithms: tuple[ProviderAlg, ...] = Field(("RS256",), min_length=1)
    user_claim: ClaimPath | None = None
    permission_claims: tuple[ClaimPath, ...] | None = None
    email_domain: str | None = Field(None, pattern=r"^[a-z0-9.-]{1,253}$",
                                     description="An e-mail user name maps to its local part "
                                                 "only in this domain.")
    subjects: dict[str, UserId] = Field({}, description="External subject -> user id.")
    roles: dict[str, tuple[Scope, ...]] = Field({}, description="IdP role -> URN scopes.")
    just_in_time: bool = False
    just_in_time_permissions: tuple[Scope, ...] = ()
    inverted_act: bool = False
    refresh_seconds: int = Field(300, ge=10, le=86400,
                                 description="Keys older than this are fetched again.")
    min_refresh_seconds: int = Field(30, ge=1, le=3600,
                                     description="An unknown kid refetches at most this often.")

    @model_validator(mode="after")
    def _check(self) -> IdentityProvider:
        if (self.discovery_url is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of discovery_url or jwks_url")
        if self.profile == "generic" and (self.user_claim is None
                                          or self.permission_claims is None):
            raise ValueError("the generic profile needs user_claim and permission_claims")
        if self.just_in_time_permissions and not self.just_in_time:
            raise ValueError("just_in_time_permissions needs just_in_time: true")
        return self

    @property
    def user_path(self) -> str:
        return self.user_claim or PROFILES[self.profile][0]

    @property
    def permission_paths(self) -> tuple[str, ...]:
        """The permission claims' paths as configured, ``{audience}`` unreplaced: it is one
        segment of a path, so :func:`claim_at` puts the audience in after splitting (an
        audience holding dots, ``infrabot.acme.example`` or a URL, stays one name)."""
        return (self.permission_claims if self.permission_claims is not None
                else PROFILES[self.profile][1])


def claim_at(payload: dict[str, Any], path: str, *, audience: str | None = None) -> object:
    """The value at a dotted ``path`` (a top-level name that itself holds dots, such as an
    Auth0 namespaced claim ``https://acme.example/roles``, is taken whole first); None if
    absent. A segment ``{audience}`` stands for ``audience``, whole."""
    if path in payload:
        return payload[path]
    node: object = payload
    for part in path.split("."):
        name = audience if part == "{audience}" and audience is not None else part
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
    return node


def claim_values(value: object) -> tuple[str, ...] | None:
    """A permission claim's values: a space-separated string (``scope``, ``scp``) or an array of
    strings; ``()`` when absent; None when it is anything else."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def mapped_scopes(provider: IdentityProvider, values: tuple[str, ...]) -> frozenset[str]:
    """The URN scopes what the provider asserted stands for: a URN scope stands for itself, a
    role for what ``roles`` maps it to; anything else for nothing."""
    out: set[str] = set()
    for value in values:
        if is_scope(value):
            out.add(value)
        out.update(provider.roles.get(value, ()))
    return frozenset(out)


def user_of(provider: IdentityProvider, value: str) -> str | None:
    """The directory id an external user name maps to, or None if it maps to none: an explicit
    ``subjects`` entry; else the name lower-cased (an e-mail address only in ``email_domain``,
    as its local part) when it is a valid user name."""
    if value in provider.subjects:
        return provider.subjects[value]
    name = value.lower()
    if "@" in name:
        local, _, domain = name.rpartition("@")
        if provider.email_domain is None or domain != provider.email_domain:
            return None
        name = local
    return f"user:{name}" if USER_NAME.fullmatch(name) else None
