"""The public surface of ``orchestrator.identity`` is curated: adding or removing a name is a
decision, made here on purpose."""

from __future__ import annotations

from orchestrator import identity

PUBLIC = [
    "ANY",
    # Delegator-confirmed hand-offs, issue 16: records and the delegation_chain claim
    "ChainReport",
    "DelegationRecord",
    "RecordStatus",
    "attest",
    "check_record",
    "confine",
    "extend_chain",
    "make_record",
    "verify_chain",
    "verify_record",
    "public_jwk",
    "delegator_signature",
    "record_status",
    # DPoP (RFC 9449), issue 16: proofs, the nonce, binding rules
    "DPOP_ALGS",
    "DPOP_TYP",
    "Confirmation",
    "NonceIssuer",
    "Proof",
    "ProofCheck",
    "ProofPolicy",
    "ath_of",
    "bound",
    "check_delegate",
    "check_holder",
    "check_scheme",
    "hand_off_binding",
    "htu_of",
    "jkt_of",
    "make_proof",
    "service_binding",
    "verify_proof",
    "AccessClaims",
    "Actor",
    "Agent",
    "AnsweredCheck",
    "AssertionPolicy",
    "CLIENT_ASSERTION_TYPE",
    "CTX_VALUE_PATTERN",  # the shapes a revocation target is checked against (/revocations)
    "JKT_PATTERN",
    "JTI_PATTERN",
    "CachedJWKS",
    "Caller",
    "ClientKeyLookup",
    "Context",
    "ContextRule",
    "Directory",
    "DirectoryEntryError",  # a cross-reference error naming its entry, for the file loader
    "EPOCH_PATTERN",
    "ExchangeRequest",
    "FederatedIdentity",
    "Grant",
    "IdentityProvider",
    "Issuance",
    "JWKSet",
    "JWS_SEGMENT",
    "KeySource",
    "MAX_LIFETIME_SECONDS",  # how long a revoked token's or DPoP key's entry must last
    "MEMORY_BEGAN_TOLERANCE_SECONDS",
    "REVOKED_KEPT_PAST_EXPIRY_SECONDS",  # the registry adapters keep a revocation this long
    "RUN_REVOCATION_TTL",  # how long the registry adapters keep a run revoked with no expiry
    "MalformedJWS",
    "MayAct",
    "MemoryRevocationStore",
    "NotAPublicKeySet",
    "PendingCheck",
    "PrivateKey",  # the private key types, for the key store (orchestrator.keystore)
    "PrivateKeyMaterial",
    "PublicKey",
    "ResourceAttributes",
    "RevocationStore",
    "RevocationTarget",
    "Service",
    "SigningKey",
    "Standing",
    "TYP",
    "TargetMismatch",
    "TokenVerifier",
    "User",
    "VerifiedToken",
    "VerifierPolicy",
    "act_nesting",
    "admit_scope",
    "alg_of",
    "check_chain",
    "decide",
    "decide_root",
    "federated_holder",
    "decode_jws",
    "filter_scopes",
    "format_scopes",
    "generate_private_key",
    "is_scope",
    "is_write",
    "jws_signature_ok",
    "make_assertion",
    "mint",
    "mismatch_of",
    "narrow",
    "nest",
    "new_epoch",
    "new_jti",
    "parse_scopes",
    "peek_target",
    "provider_key_set",
    "public_key_of",
    "public_keys_to_register",
    "refusal_for",
    "sign_jws",
    "signing_key_of",
    "split_jws",
    "thumbprint",
    "trusted_issuer",
    "unverified_payload",
    "verify_assertion",
    "verify_federated",
    "unverified_header",
]


def test_all_is_pinned() -> None:
    assert sorted(identity.__all__) == sorted(PUBLIC)
    assert len(set(identity.__all__)) == len(identity.__all__)


def test_every_public_name_exists() -> None:
    for name in identity.__all__:
        assert hasattr(identity, name), name


def test_no_public_name_is_private() -> None:
    assert not [name for name in identity.__all__ if name.startswith("_")]


def test_implementation_modules_are_private() -> None:
    # Only names Python code can use: under pytest-xdist a worker (whose path starts at the
    # checkout, with the source tree's egg-info) assertion-rewrites the product's modules,
    # which adds the rewriter's own, ``@py_builtins`` and ``@pytest_ar``.
    modules = {name for name, value in vars(identity).items()
               if type(value).__name__ == "module" and name.isidentifier()}
    assert all(name.startswith("_") for name in modules), modules


def test_the_core_imports_no_web_framework_or_celery() -> None:
    import subprocess
    import sys

    code = ("import sys, orchestrator.identity; "
            "print(sorted(m for m in ('fastapi', 'starlette', 'celery', 'uvicorn', 'httpx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
