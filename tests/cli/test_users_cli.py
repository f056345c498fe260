"""Every command that takes a user reads it one way: ``sam`` and ``user:sam`` are the same user,
and a user the directory does not know is one error line listing the known users, with nothing
done. Run as a user types them, against a running ``infrabot serve`` where they need one."""

from __future__ import annotations

import pytest
from _cli import clean_env, infrabot

KNOWN = "known users: user:alex, user:former-employee, user:robin, user:sam"


def _unknown(result_line: str, typed: str) -> None:
    wanted = typed if typed.startswith("user:") else f"user:{typed}"
    assert result_line == f"{wanted} is not a user in the directory (unknown_user); {KNOWN}"


def test_revoke_a_bare_login_revokes_that_user(env: dict[str, str],
                                               system: dict[str, str]) -> None:
    before = infrabot("token", "user", "sam", env=env).ok().stdout.strip()
    line = infrabot("revoke", "--user", "sam", env=env).ok().stdout.strip()
    assert line.startswith("revoked every delegation of user:sam (revocation version ")
    # The token rooted before the revocation is refused: the bare login reached user:sam.
    inspected = infrabot("token", "inspect", "--json", before, env=env)
    assert inspected.returncode == 1, inspected
    data = inspected.json()
    assert isinstance(data, dict) and data["reason"] == "inactive"


@pytest.mark.parametrize("typed", ["user:samm", "samm", "nobody"])
def test_revoke_an_unknown_user_is_refused_before_anything_is_sent(
        env: dict[str, str], system: dict[str, str], typed: str) -> None:
    result = infrabot("revoke", "--user", typed, env=env)
    _unknown(result.error_line(), typed)
    assert result.stdout == ""


def test_runs_list_reads_a_login_and_an_identity_alike(env: dict[str, str],
                                                       system: dict[str, str]) -> None:
    infrabot("simulate", "deploy", "--user", "user:sam", "--json", env=env).ok()
    bare = infrabot("runs", "list", "--user", "sam", "--json", env=env).ok().json()
    full = infrabot("runs", "list", "--user", "user:sam", "--json", env=env).ok().json()
    assert isinstance(bare, list) and bare and bare == full
    assert {run["user"] for run in bare} == {"user:sam"}
    _unknown(infrabot("runs", "list", "--user", "samm", env=env).error_line(), "samm")


def test_token_user_reads_a_bare_login(env: dict[str, str], system: dict[str, str]) -> None:
    result = infrabot("token", "user", "alex", env=env).ok()
    assert "issued for user:alex" in result.stderr
    _unknown(infrabot("token", "user", "alexx", env=env).error_line(), "alexx")


def test_simulate_refuses_an_unknown_user_before_sending(env: dict[str, str],
                                                         system: dict[str, str]) -> None:
    result = infrabot("simulate", "deploy", "--user", "user:nobody", env=env)
    _unknown(result.error_line(), "user:nobody")


def test_workflows_check_reads_both_forms() -> None:
    bare = infrabot("workflows", "check", "post-deploy", "--user", "sam", "--json",
                    env=clean_env()).ok().json()
    full = infrabot("workflows", "check", "post-deploy", "--user", "user:sam", "--json",
                    env=clean_env()).ok().json()
    assert bare == full
    result = infrabot("workflows", "check", "post-deploy", "--user", "samm", env=clean_env())
    assert result.returncode == 2
    _unknown(result.stderr.strip().removeprefix("Error: "), "samm")


def test_audit_query_reads_a_login_and_an_identity_alike(env: dict[str, str],
                                                        system: dict[str, str]) -> None:
    infrabot("simulate", "deploy", "--user", "sam", "--json", env=env).ok()
    bare = infrabot("audit", "query", "--user", "sam", "--json", env=env).ok().json()
    full = infrabot("audit", "query", "--user", "user:sam", "--json", env=env).ok().json()
    assert isinstance(bare, list) and bare and bare == full
    assert {record["on_behalf_of"] for record in bare} == {"user:sam"}
    _unknown(infrabot("audit", "query", "--user", "samm", env=env).error_line(), "samm")
