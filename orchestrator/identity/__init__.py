"""The pure trust core: claims, scopes, keys, tokens, exchange rules, policy, revocation.

Imports no web framework, no Celery and no client library (Redis, SQL, HTTP): the registry on
Redis is an adapter at the edge (:mod:`orchestrator.registry`). The authorization server, the
mock services and the agents all use it, the way a real service imports an auth SDK.
"""

from orchestrator.identity._admission import Caller, admit_scope
from orchestrator.identity._assertions import (
    CLIENT_ASSERTION_TYPE,
    AssertionPolicy,
    ClientKeyLookup,
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
from orchestrator.identity._federated import (
    FederatedIdentity,
    federated_holder,
    trusted_issuer,
    verify_federated,
)
from orchestrator.identity._jws import unverified_payload
from orchestrator.identity._keyring import (
    ClientKeyInit,
    KeyRing,
    client_key,
    client_key_path,
    client_keys_dir,
    init_client_key,
    load_client_key,
)
from orchestrator.identity._keys import (
    JWKSet,
    NotAPublicKeySet,
    PrivateKeyMaterial,
    PublicKey,
    SigningKey,
    public_keys_to_register,
    thumbprint,
)
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
from orchestrator.identity._provider_keys import provider_key_set
from orchestrator.identity._providers import IdentityProvider
from orchestrator.identity._revocation import (
    MemoryRevocationStore,
    PendingCheck,
    RevocationStore,
    RevocationTarget,
    Standing,
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
    "Caller",
    "ClientKeyInit",
    "ClientKeyLookup",
    "Context",
    "ContextRule",
    "Directory",
    "ExchangeRequest",
    "FederatedIdentity",
    "Grant",
    "IdentityProvider",
    "Issuance",
    "JWKSet",
    "KeyRing",
    "KeySource",
    "MayAct",
    "MemoryRevocationStore",
    "NotAPublicKeySet",
    "PendingCheck",
    "PrivateKeyMaterial",
    "PublicKey",
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
    "admit_scope",
    "check_chain",
    "client_key",
    "client_key_path",
    "client_keys_dir",
    "decide",
    "decide_root",
    "federated_holder",
    "filter_scopes",
    "format_scopes",
    "init_client_key",
    "is_write",
    "load_client_key",
    "load_directory",
    "make_assertion",
    "mint",
    "mismatch_of",
    "narrow",
    "nest",
    "new_jti",
    "parse_scopes",
    "peek_target",
    "provider_key_set",
    "public_keys_to_register",
    "thumbprint",
    "trusted_issuer",
    "unverified_payload",
    "verify_assertion",
    "verify_federated",
]
