"""``infrabot keys register|list|revoke`` with only ``INFRABOT_DATABASE_URL`` set (no state
directory named, run from an empty directory): the registry is the database's ``client_keys``
table, on SQLite and on PostgreSQL, with the same lines as the state directory's registry."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.authserver import SqlClientRegistry
from orchestrator.config import Settings
from orchestrator.identity import generate_private_key
from orchestrator.keystore import write_private
from tests._postgres import fresh_schema
from tests.cli._cli import Result, clean_env, infrabot

REGISTER_ONLY = "register only the public JWK Set that `infrabot keys init` prints"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db'}"
    else:
        with fresh_schema() as where:
            yield where


def admin(url: str, cwd: Path, *args: str) -> Result:
    """``infrabot keys ARGS`` where the only setting is the database's URL."""
    cwd.mkdir(exist_ok=True)
    return infrabot("keys", *args, env=clean_env(INFRABOT_DATABASE_URL=url), cwd=cwd)


def test_register_list_revoke_in_the_database(url: str, tmp_path: Path) -> None:
    host, cwd = tmp_path / "argocd-host", tmp_path / "admin"
    jwks = tmp_path / "argocd.jwks"
    jwks.write_text(infrabot("keys", "init", "agent:argocd", "--state-dir", str(host),
                             env=clean_env()).ok().stdout)
    kid = json.loads(jwks.read_text())["keys"][0]["kid"]

    assert admin(url, cwd, "list").ok().stderr == "no keys registered\n"
    assert admin(url, cwd, "register", "agent:argocd", "--jwks", str(jwks)).ok().stdout == \
        f"registered: agent:argocd {kid} ES256\n"
    assert admin(url, cwd, "register", "agent:argocd", "--jwks", str(jwks)).ok().stdout == \
        f"already registered: agent:argocd {kid} ES256\n"
    listed = admin(url, cwd, "list", "--json").ok().json()
    assert isinstance(listed, list)
    assert [(e["client_id"], e["kid"], e["alg"]) for e in listed] == [
        ("agent:argocd", kid, "ES256")]
    assert admin(url, cwd, "register", "agent:cleanup", "--jwks", str(jwks)).error_line() == (
        f"refused: key {kid} is already registered for agent:argocd; each client needs a key "
        "of its own")

    target = Settings(database_url=url, state_dir=cwd / ".infrabot").registry_target
    with SqlClientRegistry(target) as registry:  # what the server reads
        assert [(e.client_id, e.kid) for e in registry.entries()] == [("agent:argocd", kid)]
        assert list(registry.keys_of("agent:argocd")) == [kid]

    assert admin(url, cwd, "revoke", "agent:argocd", kid).ok().stdout == (
        f"revoked agent:argocd {kid}: assertions signed with it are refused (invalid_client)\n")
    assert admin(url, cwd, "revoke", "agent:argocd", kid).error_line() == \
        f"no key '{kid}' is registered for 'agent:argocd'"
    [revoked] = admin(url, cwd, "list", "--json").ok().json()  # type: ignore[misc]
    assert (revoked["client_id"], revoked["kid"], set(revoked)) == (
        "agent:argocd", kid, {"client_id", "kid", "revoked"})
    assert not list(cwd.rglob("client_registry.json")) and not list(cwd.rglob("*.pem"))


def test_private_material_never_reaches_the_database(url: str, tmp_path: Path) -> None:
    pem = tmp_path / "argocd.pem"
    write_private(pem, generate_private_key("ES256"))
    cwd = tmp_path / "admin"
    assert admin(url, cwd, "register", "agent:argocd", "--jwks", str(pem)).error_line() == \
        f"refused: {pem} holds a private key; {REGISTER_ONLY}"
    assert admin(url, cwd, "list", "--json").ok().json() == []


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://postgres:s3cret@127.0.0.1:{port}/ib_nowhere"
    for args in (("list",), ("revoke", "agent:argocd", "k")):
        line = admin(url, tmp_path / "admin", *args).error_line()
        assert line.startswith(f"bad_configuration: cannot reach the database at "
                               f"postgresql://postgres@127.0.0.1:{port}/ib_nowhere "
                               "(INFRABOT_DATABASE_URL, in place of INFRABOT_AUTH_DATABASE_URL, "
                               "which is unset): "), line
        assert "s3cret" not in line
