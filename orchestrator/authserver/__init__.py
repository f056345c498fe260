"""The authorization server: RFC 8414 metadata, JWKS, RFC 8693 token exchange with
``private_key_jwt`` client authentication, RFC 7662 introspection, RFC 7009 revocation."""

from orchestrator.authserver._app import create_app
from orchestrator.authserver._client_keys import CLIENT_KEYS_PATH
from orchestrator.authserver._clients import ClientKeys
from orchestrator.authserver._dpop import DPOP_KEYS_PATH
from orchestrator.authserver._dpop_keys import DPoPKeyBook, RegistryKeyBook, SharedKeyBook
from orchestrator.authserver._registry import (
    ClientRegistry,
    KeyInUse,
    KeyRevoked,
    RegisteredKey,
    SqlClientRegistry,
    StateDirRegistry,
    open_registry,
)
from orchestrator.authserver._service import (
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_JWT,
    AuthorizationService,
    TokenResponse,
)

__all__ = [
    "CLIENT_KEYS_PATH",
    "DPOP_KEYS_PATH",
    "GRANT_JWT_BEARER",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS",
    "TOKEN_TYPE_JWT",
    "AuthorizationService",
    "ClientKeys",
    "ClientRegistry",
    "DPoPKeyBook",
    "KeyInUse",
    "KeyRevoked",
    "RegisteredKey",
    "RegistryKeyBook",
    "SharedKeyBook",
    "SqlClientRegistry",
    "StateDirRegistry",
    "TokenResponse",
    "create_app",
    "open_registry",
]
