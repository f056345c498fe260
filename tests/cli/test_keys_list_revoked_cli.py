"""``infrabot keys list`` shows revoked keys too, marked revoked with their time, in the table
and in ``--json``, on the state directory's registry and in the database; live keys are listed
as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import Result, clean_env, infrabot


def keys(env: dict[str, str], cwd: Path, *args: str) -> Result:
    cwd.mkdir(exist_ok=True)
    return infrabot("keys", *args, env=env, cwd=cwd)


def new_jwks(tmp_path: Path, host: str) -> tuple[Path, str]:
    jwks = tmp_path / f"{host}.jwks"
    jwks.write_text(infrabot("keys", "init", "agent:argocd", "--state-dir",
                             str(tmp_path / host), env=clean_env()).ok().stdout)
    return jwks, json.loads(jwks.read_text())["keys"][0]["kid"]


@pytest.mark.parametrize("where", ["state_dir", "sqlite"])
def test_revoked_keys_are_listed_marked_revoked(where: str, tmp_path: Path) -> None:
    admin = tmp_path / "admin"
    env = clean_env(INFRABOT_STATE_DIR=str(admin / "state")) if where == "state_dir" else \
        clean_env(INFRABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'db'}")
    (old, old_kid), (new, new_kid) = new_jwks(tmp_path, "a"), new_jwks(tmp_path, "b")
    keys(env, admin, "register", "agent:argocd", "--jwks", str(old)).ok()
    keys(env, admin, "register", "agent:argocd", "--jwks", str(new)).ok()
    before = keys(env, admin, "list").ok().stdout.splitlines()
    [live] = [row for row in before if new_kid in row]
    keys(env, admin, "revoke", "agent:argocd", old_kid).ok()

    listed = keys(env, admin, "list", "--json").ok().json()
    assert isinstance(listed, list)
    [alive, revoked] = listed
    assert alive == {"client_id": "agent:argocd", "kid": new_kid, "alg": "ES256",
                     "added": live.split()[-1]}
    assert set(revoked) == {"client_id", "kid", "revoked"}
    assert (revoked["client_id"], revoked["kid"]) == ("agent:argocd", old_kid)
    assert revoked["revoked"].endswith("Z") and revoked["revoked"][:2] == "20"

    table = keys(env, admin, "list").ok().stdout.splitlines()
    assert table[0].split() == ["client", "kid", "alg", "added"]
    assert table[1:] == [live, f"agent:argocd  {old_kid}  -      revoked {revoked['revoked']}"]
