"""A user's own identity-provider token, verified and mapped: the third policy of the one
verifier (:mod:`._verify`), and the rule that IdP-asserted permissions only narrow the
directory's (docs/federation.md).

:func:`verify_federated` picks the trusted provider whose ``issuer`` the token names (a token
naming no trusted issuer is ``untrusted_issuer``) and verifies it with that provider's keys,
algorithms and audience, all from configuration. :func:`federated_holder` says what the user
may be granted: the directory's permissions (or, for a just-in-time user, the provider's
``just_in_time_permissions``, none by default) ∩ what the token asserts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import InvalidGrant, InvalidToken
from orchestrator.identity import _jws
from orchestrator.identity._claims import IDP_SUBJECT_PATTERN
from orchestrator.identity._keys import PublicKey
from orchestrator.identity._policy import Directory, User
from orchestrator.identity._providers import (
    IdentityProvider,
    claim_at,
    claim_values,
    mapped_scopes,
    user_of,
)
from orchestrator.identity._tokens import HEADER_REFUSALS, KeySource, published_key
from orchestrator.identity._verify import HeaderRules, Refusals, verify_jws

# Thumbprints name a certificate and are not followed (Entra's tokens carry x5t beside kid);
# a key or a place to fetch one is refused, as for our own tokens.
_HEADER = HeaderRules(
    typ=frozenset({"jwt", "at+jwt", "application/at+jwt"}), typ_required=False, kid_max=256,
    extra_params=None, refused_keys=_jws.KEY_HEADERS - {"x5t", "x5t#S256"},
    refusals={**HEADER_REFUSALS,
              "alg": ("alg_not_allowed", "signing algorithm is not one this provider may use"),
              "typ": ("wrong_typ", "typ must be JWT or at+jwt")})
_SUBJECT = re.compile(IDP_SUBJECT_PATTERN)

_REFUSALS = Refusals(
    not_a_string=("malformed", "token must be a non-empty string"),
    too_large=("token_too_large", "token is too large"),
    not_compact=("malformed", "token is not a compact JWS (three base64url segments)"),
    undecodable=("malformed", "token cannot be decoded"),
    unsuitable_key=("malformed", "token cannot be decoded"),
    malleable=("malleable_signature", "ES256 signature must be in its low-S form"),
    bad_signature=("bad_signature", "signature does not verify"),
    payload_not_object=("malformed", "payload is not a JSON object"),
)


@dataclass(frozen=True)
class FederatedIdentity:
    """Who a verified IdP token names, and what it asserts (mapped to URN scopes)."""

    user: str
    issuer: str
    subject: str
    asserted: frozenset[str]
    inverted: bool = False  # the article's inverted shape, normalised (the audit warns)


def _refuse(reason: str, message: str) -> InvalidToken:
    return InvalidToken(message, reason=reason)


def verify_federated(token: object, providers: Mapping[str, IdentityProvider],
                     keys: Callable[[IdentityProvider], KeySource], *, now: int,
                     leeway: int, max_bytes: int) -> tuple[IdentityProvider, FederatedIdentity]:
    """The trusted provider ``token`` comes from and who it names, or :class:`InvalidToken`.

    ``providers`` are the trusted ones by issuer; ``keys`` gives each one's published keys."""
    claimed = _jws.unverified_payload(token, max_bytes=max_bytes)
    issuer = claimed.get("iss") if claimed else None
    provider = providers.get(issuer) if isinstance(issuer, str) else None
    if provider is None:
        if claimed is None:  # let the verifier say what is wrong with it
            raise _refuse("malformed", "token is not a compact JWS with a JSON payload")
        raise _refuse("untrusted_issuer", "token's issuer is not a trusted identity provider")
    rules = _ProviderRules(provider, keys(provider), leeway, max_bytes)
    return provider, verify_jws(token, rules, now=now)


def trusted_issuer(token: object, providers: Mapping[str, IdentityProvider], *,
                   max_bytes: int) -> bool:
    """Whether ``token`` says (unverified) it comes from a trusted provider: which grant path
    a subject token takes, never whether it is accepted."""
    claimed = _jws.unverified_payload(token, max_bytes=max_bytes)
    issuer = claimed.get("iss") if claimed else None
    return isinstance(issuer, str) and issuer in providers


def federated_holder(directory: Directory, provider: IdentityProvider,
                     identity: FederatedIdentity) -> tuple[User, frozenset[str]]:
    """What ``identity`` may be granted, and what the token asserted beyond it (ignored: an
    IdP never widens). A user unknown to the directory is ``unknown_user`` unless the provider
    allows just-in-time users; a disabled one is ``unknown_user`` too."""
    entry = directory.users.get(identity.user)
    if entry is None and provider.just_in_time:
        entry = User(permissions=provider.just_in_time_permissions)
    if entry is None or entry.disabled:
        raise InvalidGrant(f"{identity.user} is not an active user", reason="unknown_user")
    base = frozenset(entry.permissions)
    narrowed = tuple(s for s in entry.permissions if s in identity.asserted)
    return User(permissions=narrowed), identity.asserted - base


@dataclass(frozen=True, slots=True)
class _ProviderRules:
    provider: IdentityProvider
    keys: KeySource
    leeway: int
    max_bytes: int
    refusals: Refusals = _REFUSALS
    key_named_by_payload = False
    # A provider signs with its own library: ES256 signatures come in either S form (the low-S
    # rule is for the tokens this server mints, so that each has one encoding).
    accepts_high_s = True

    @staticmethod
    def refuse(reason: str, message: str) -> InvalidToken:
        return _refuse(reason, message)

    def check_header(self, header: dict[str, Any]) -> None:
        _HEADER.check(header, tuple(self.provider.algorithms), _refuse)

    def choose_key(self, header: dict[str, Any], payload: dict[str, Any] | None) -> PublicKey:
        return published_key(self.keys, header)

    def check_claims(self, payload: dict[str, Any], key: PublicKey, size: int, *,
                     now: int) -> FederatedIdentity:
        p = self.provider
        if payload.get("iss") != p.issuer:
            raise _refuse("issuer_mismatch", "issuer is not the provider's")
        aud = payload.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if p.audience not in audiences:
            raise _refuse("audience_mismatch", "token is not meant for this audience")
        _check_times(payload, now=now, leeway=self.leeway)
        act = payload.get("act")
        if act is not None and not p.inverted_act:
            raise _refuse("inverted_chain", "an identity provider's token must name the user "
                                            "in sub, with no act")
        if act is not None and not isinstance(act, dict):
            raise _refuse("invalid_act", "act must be an object")
        source = act if isinstance(act, dict) else payload
        name = claim_at(source, p.user_path)
        if name is None and act is not None:
            name = act.get("sub")
        subject = source.get("sub", name)
        if not isinstance(name, str) or not isinstance(subject, str):
            raise _refuse("missing_claim", f"the user claim {p.user_path!r} is missing")
        if not _SUBJECT.fullmatch(subject) or ("eyJ" in subject and subject.count(".") >= 2):
            raise _refuse("invalid_claims", "the subject is not a printable identifier")
        user = user_of(p, name)
        if user is None:
            raise _refuse("unmappable_user", "the user claim maps to no directory user name")
        values: list[str] = []
        for path in p.permission_paths:
            found = claim_values(claim_at(payload, path, audience=p.audience))
            if found is None:
                shown = path.replace("{audience}", p.audience)
                raise _refuse("invalid_claims", f"claim {shown!r} is not a string or a list "
                                                "of strings")
            values.extend(found)
        return FederatedIdentity(user=user, issuer=p.issuer, subject=subject,
                                 asserted=mapped_scopes(p, tuple(values)),
                                 inverted=act is not None)


def _check_times(payload: dict[str, Any], *, now: int, leeway: int) -> None:
    exp = payload.get("exp")
    if exp is None:
        raise _refuse("missing_claim", "required claim 'exp' is missing")
    for name in ("exp", "iat", "nbf"):
        value = payload.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _refuse("invalid_claims", f"claim {name!r} must be an integer")
    if now >= exp + leeway:
        raise _refuse("token_expired", "token has expired")
    for name in ("iat", "nbf"):
        value = payload.get(name)
        if value is not None and value > now + leeway:
            raise _refuse("token_not_yet_valid", "token is not valid yet")
