"""``infrabot revoke`` against a running ``infrabot serve``: a target the server refuses (a run id
or jti of the wrong shape) is the server's refusal in one line and exit 1, never a success."""

from __future__ import annotations

import pytest
from _cli import infrabot, run_all


@pytest.mark.parametrize(("args", "reason"), [
    (("--run", "run-4db1340b "), "malformed_run_id"),
    (("--run", "run-\u2603"), "malformed_run_id"),
    (("--jti", "../../x"), "malformed_jti"),
    (("--jti", "abcdefgh12345678 "), "malformed_jti"),
])
def test_a_refused_target_is_one_line_and_exit_1(env: dict[str, str], system: dict[str, str],
                                                 args: tuple[str, ...], reason: str) -> None:
    result = infrabot("revoke", *args, env=env)
    assert result.returncode == 1, result
    assert result.error_line().startswith(f"invalid_request ({reason}): ")
    assert result.stdout == ""


def test_well_formed_targets_are_still_revoked(env: dict[str, str],
                                               system: dict[str, str]) -> None:
    run, jti = run_all([(("revoke", "--run", "run-4db1340b"), env),
                        (("revoke", "--jti", "abcdefgh12345678"), env)])
    assert run.ok().stdout.strip() == "revoked every token of run run-4db1340b"
    assert jti.ok().stdout.startswith("revoked token abcdefgh12345678")
