"""A private key file is mode 0600 whatever a leftover temporary file of the same name was:
another mode, or a symbolic link that would lead the key elsewhere."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from orchestrator.identity import generate_private_key
from orchestrator.keystore import init_client_key, read_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_leftover_temporary_file_does_not_loosen_the_key(tmp_path: Path) -> None:
    where = tmp_path / "clients"
    where.mkdir(mode=0o700)
    leftover = where / "agent_argocd.tmp"
    leftover.write_text("old")
    leftover.chmod(0o644)
    init_client_key(where, "agent:argocd", "ES256")
    assert mode(where / "agent_argocd.pem") == 0o600
    assert not leftover.exists()


def test_a_leftover_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    target.chmod(0o644)
    (tmp_path / "key.tmp").symlink_to(target)
    write_private(tmp_path / "key.pem", generate_private_key("ES256"))
    assert target.read_text() == ""
    assert mode(tmp_path / "key.pem") == 0o600
    read_private(tmp_path / "key.pem")
