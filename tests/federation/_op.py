"""A real, certified OpenID Provider for the tests: panva's ``oidc-provider`` on Node 20
(``tests/federation/node``, installed by ``npm ci`` from its lock file), started on a loopback
port with test clients; tokens come from its token endpoint (client_credentials, JWT access
tokens for one resource). Skipped with the reason when Node or npm is absent, except on CI
(``CI=true``), where that is a failure."""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator.identity import parse_scopes
from tests._node import node_with

NODE_DIR = Path(__file__).resolve().parent / "node"
RESOURCE = "https://infrabot.test/api"
SECRET = "op-test-secret-0123456789abcdef0123456789"
START_SECONDS = 30.0


def node_with_oidc_provider() -> str:
    """The ``node`` binary, with oidc-provider installed from the lock file."""
    return node_with(NODE_DIR, "oidc-provider")


@dataclass
class OpenIDProvider:
    issuer: str

    def token(self, client_id: str, scopes: list[str]) -> str:
        """An access token (a JWT for :data:`RESOURCE`) from the token endpoint."""
        response = httpx.post(f"{self.issuer}/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": SECRET,
            "scope": " ".join(scopes), "resource": RESOURCE})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


@contextmanager
def openid_provider(clients: list[str], scopes: list[str]) -> Iterator[OpenIDProvider]:
    """oidc-provider on a loopback port with ``clients`` (client_credentials, one shared test
    secret) and ``scopes`` for :data:`RESOURCE`; stopped (by its pid) when the block ends."""
    node = node_with_oidc_provider()
    config = {"clients": [{"client_id": c, "client_secret": SECRET} for c in clients],
              "resource": RESOURCE, "scopes": sorted(parse_scopes(" ".join(scopes)))}
    process = subprocess.Popen([node, str(NODE_DIR / "provider.mjs")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(config))
        process.stdin.close()
        deadline = time.monotonic() + START_SECONDS
        ready, _, _ = select.select([process.stdout], [], [], START_SECONDS)
        line = process.stdout.readline() if ready else ""
        if not line or time.monotonic() > deadline:
            pytest.fail(f"oidc-provider did not start within {START_SECONDS:g} s")
        yield OpenIDProvider(json.loads(line)["issuer"])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
