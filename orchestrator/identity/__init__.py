"""The pure trust core: claims, scopes, keys, tokens, exchange rules, policy, revocation.

Imports no web framework and no Celery. The authorization server, the mock services and the
agents all use it, the way a real service imports an auth SDK.
"""

from orchestrator.identity._assertions import (
    CLIENT_ASSERTION_TYPE,
    AssertionPolicy,
    make_assertion,
    verify_assertion,
)
from orchestrator.identity._claims import AccessClaims, Actor, Context, MayAct, act_nesting, nest
from orchestrator.identity._exchange import (
    ExchangeRequest,
    Grant,
    Issuance,
    decide,
    decide_root,
    new_jti,
)
from orchestrator.identity._keyring import KeyRing, client_key, registered_client_jwk
from orchestrator.identity._keys import JWKSet, PublicKey, SigningKey, thumbprint
from orchestrator.identity._policy import (
    ANY,
    Agent,
    ContextRule,
    Directory,
    ResourceAttributes,
    Service,
    TargetMismatch,
    User,
    load_directory,
    mismatch_of,
)
from orchestrator.identity._revocation import (
    MemoryRevocationStore,
    PendingCheck,
    RedisRevocationStore,
    RevocationStore,
    RevocationTarget,
    Standing,
    open_store,
    peek_target,
)
from orchestrator.identity._scopes import (
    filter_scopes,
    format_scopes,
    is_write,
    narrow,
    parse_scopes,
)
from orchestrator.identity._tokens import (
    TYP,
    CachedJWKS,
    KeySource,
    TokenVerifier,
    VerifiedToken,
    VerifierPolicy,
    check_chain,
    mint,
)

__all__ = [
    "ANY",
    "CLIENT_ASSERTION_TYPE",
    "TYP",
    "AccessClaims",
    "Actor",
    "Agent",
    "AssertionPolicy",
    "CachedJWKS",
    "Context",
    "ContextRule",
    "Directory",
    "ExchangeRequest",
    "Grant",
    "Issuance",
    "JWKSet",
    "KeyRing",
    "KeySource",
    "MayAct",
    "MemoryRevocationStore",
    "PendingCheck",
    "PublicKey",
    "RedisRevocationStore",
    "ResourceAttributes",
    "RevocationStore",
    "RevocationTarget",
    "Service",
    "SigningKey",
    "Standing",
    "TargetMismatch",
    "TokenVerifier",
    "User",
    "VerifiedToken",
    "VerifierPolicy",
    "act_nesting",
    "check_chain",
    "client_key",
    "decide",
    "decide_root",
    "filter_scopes",
    "format_scopes",
    "is_write",
    "load_directory",
    "make_assertion",
    "mint",
    "mismatch_of",
    "narrow",
    "nest",
    "new_jti",
    "open_store",
    "parse_scopes",
    "peek_target",
    "registered_client_jwk",
    "thumbprint",
    "verify_assertion",
]
