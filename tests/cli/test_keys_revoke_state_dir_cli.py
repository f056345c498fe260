"""``infrabot keys revoke`` in a mistyped state directory is one line, as ``keys list`` is: it
neither makes the directory nor revokes anything in an empty registry there."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import clean_env, run_all


@pytest.mark.parametrize("flag", [True, False], ids=["--state-dir", "INFRABOT_STATE_DIR"])
def test_revoke_in_a_missing_state_directory_is_one_line_and_makes_none(tmp_path: Path,
                                                                        flag: bool) -> None:
    typo = tmp_path / "sever" / "state"
    calls = [(("keys", "revoke", client, kid, *(("--state-dir", str(typo)) if flag else ())),
              clean_env() if flag else clean_env(INFRABOT_STATE_DIR=str(typo)))
             for client, kid in (("agent:argocd", "8J4fkid"), ("dpop:agent:argocd", "-kid"))]
    for result in run_all(calls):
        assert result.returncode == 1, result
        assert result.error_line() == (
            f"no such state directory: {typo} (where `infrabot serve` or `infrabot demo` ran; "
            "--state-dir or INFRABOT_STATE_DIR)"), result
        assert result.stdout == "", result
    assert not (tmp_path / "sever").exists()
