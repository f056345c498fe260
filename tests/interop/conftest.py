"""Real OAuth clients against a running authorization server (real HTTP on loopback).

The server is the one the authserver tests start (:func:`tests.authserver.conftest.serve`).
Before it starts, the clients these tests drive get RSA keys (RS256, the default of Authlib's
``PrivateKeyJWT`` and of most clients) in the state directory, as ``infrabot keys init`` leaves
them: the server reads only their public JWKs; the client reads its private key file, as a
deployed client would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from infrabot.stack import client_keys_dir
from orchestrator.config import Settings
from orchestrator.identity import SigningKey
from orchestrator.keystore import client_key
from tests._node import node_with
from tests.authserver.conftest import ARGOCD, INFRABOT, AuthServer, serve

RSA_CLIENTS = (INFRABOT, ARGOCD)

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` binary, with openid-client installed from the lock file."""
    return node_with(NODE_DIR, "openid-client")


def private_key_pem(key: SigningKey) -> bytes:
    return key.private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    state = tmp_path_factory.mktemp("interop")
    keys = client_keys_dir(Settings(state_dir=state))
    for client in RSA_CLIENTS:
        client_key(keys, client, "RS256")
    with serve(state) as server:
        assert all(server.stack.clients[c].alg == "RS256" for c in RSA_CLIENTS)
        yield server
