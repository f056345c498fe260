"""The public surface of ``orchestrator.identity`` is curated: adding or removing a name is a
decision, made here on purpose."""

from __future__ import annotations

from orchestrator import identity

PUBLIC = [
    "ANY",
    "CLIENT_ASSERTION_TYPE",
    "TYP",
    "AccessClaims",
    "AssertionPolicy",
    "Actor",
    "Agent",
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


def test_all_is_pinned() -> None:
    assert sorted(identity.__all__) == sorted(PUBLIC)
    assert len(set(identity.__all__)) == len(identity.__all__)


def test_every_public_name_exists() -> None:
    for name in identity.__all__:
        assert hasattr(identity, name), name


def test_no_public_name_is_private() -> None:
    assert not [name for name in identity.__all__ if name.startswith("_")]


def test_implementation_modules_are_private() -> None:
    modules = {name for name, value in vars(identity).items()
               if type(value).__name__ == "module"}
    assert all(name.startswith("_") for name in modules), modules


def test_the_core_imports_no_web_framework_or_celery() -> None:
    import subprocess
    import sys

    code = ("import sys, orchestrator.identity; "
            "print(sorted(m for m in ('fastapi', 'starlette', 'celery', 'uvicorn', 'httpx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
