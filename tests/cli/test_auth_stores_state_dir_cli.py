"""Whether a command that makes no state directory needs an existing one follows the database it
uses: the authorization server's stores (``keys list``, ``keys revoke``, ``audit ...``: the
client registry, the audit trail) are out of it once ``INFRABOT_AUTH_DATABASE_URL`` or
``INFRABOT_DATABASE_URL`` is set; the run log (``runs ...``, ``simulate ...``) only once
``INFRABOT_DATABASE_URL`` is. A state directory nothing is read from is never demanded, nor
made."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import clean_env, run_all

from infrabot.cli._common import CommandError, StateUse, load_settings
from orchestrator.audit import AuditStore

NO_DIR = "no such state directory: {} (where `infrabot serve` or `infrabot demo` ran; " \
         "--state-dir or INFRABOT_STATE_DIR)"


@pytest.mark.parametrize(("state", "auth", "runs", "needed"), [
    ("stores", False, False, True),
    ("stores", True, False, False),  # the auth database alone: the auth host's settings
    ("stores", False, True, False),  # the auth database falls back to the run log's
    ("stores", True, True, False),
    ("run_log", False, False, True),
    ("run_log", True, False, True),  # the run log is still in the state directory
    ("run_log", False, True, False),
    ("run_log", True, True, False),
])
def test_the_state_directory_is_needed_where_the_store_is(
        state: StateUse, auth: bool, runs: bool, needed: bool, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFRABOT_AUTH_DATABASE_URL", "INFRABOT_DATABASE_URL", "INFRABOT_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    if auth:
        monkeypatch.setenv("INFRABOT_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth'}")
    if runs:
        monkeypatch.setenv("INFRABOT_DATABASE_URL", f"sqlite:///{tmp_path / 'runs'}")
    missing = tmp_path / "missing"
    if needed:
        with pytest.raises(CommandError) as caught:
            load_settings(missing, state=state)
        assert caught.value.message == NO_DIR.format(missing)
    else:
        assert load_settings(missing, state=state).state_dir == missing
    assert not missing.exists()


def test_the_auth_hosts_commands_need_no_state_directory(tmp_path: Path) -> None:
    """Only INFRABOT_AUTH_DATABASE_URL set, as on the auth host of docs/deploy.md with the run
    log's setting left out: the registry and audit commands work on the auth database, and
    ``runs list`` still wants the state directory, where the run log then is."""
    auth, missing = tmp_path / "auth", tmp_path / "none"
    AuditStore(auth / "audit.sqlite3").close()  # an empty trail, as serve leaves it
    env = clean_env(INFRABOT_AUTH_DATABASE_URL=f"sqlite:///{auth}",
                    INFRABOT_STATE_DIR=str(missing))
    listed, revoked, queried, verified, runs = run_all([
        (("keys", "list"), env), (("keys", "revoke", "agent:argocd", "kid-1"), env),
        (("audit", "query", "--json"), env), (("audit", "verify"), env),
        (("runs", "list"), env)])
    assert listed.ok().stdout == "" and listed.stderr.strip() == "no keys registered"
    assert revoked.error_line() == "no key 'kid-1' is registered for 'agent:argocd'"
    assert queried.ok().json() == []
    assert verified.ok().stdout.strip().endswith("0 records from 0 writers, 0 checkpoints")
    assert runs.error_line() == NO_DIR.format(missing)
    assert not missing.exists()
