"""A PostgreSQL database that cannot be reached is named by the setting to fix, as the settings
passed it down (never guessed from the URL): the auth database's stores (the audit trail, the
client registry) by ``INFRABOT_AUTH_DATABASE_URL``, or by ``INFRABOT_DATABASE_URL`` in its place
when it is unset; the run log by ``INFRABOT_DATABASE_URL``; a URL given as such by no setting.
Never with the password. (No PostgreSQL needed: nothing listens on the ports.)"""

from __future__ import annotations

import copy
import pickle
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.audit import AuditStore
from orchestrator.authserver import SqlClientRegistry
from orchestrator.config import Settings
from orchestrator.db import DatabaseUrl, Store
from orchestrator.errors import ConfigError
from orchestrator.runs import RunStore
from tests.cli._cli import clean_env, infrabot

AUTH = "INFRABOT_AUTH_DATABASE_URL"
RUNS = "INFRABOT_DATABASE_URL"
FALLBACK = f"{RUNS}, in place of {AUTH}, which is unset"
OPENERS: dict[str, Callable[[Settings], Store]] = {
    "audit": lambda s: AuditStore(s.audit_target),
    "registry": lambda s: SqlClientRegistry(s.registry_target),
    "runs": lambda s: RunStore(s.runs_target),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _down(database: str) -> tuple[str, str]:
    """A URL with a password where nothing answers, and how a message shows it."""
    port = _free_port()
    return (f"postgresql://postgres:s3cret@127.0.0.1:{port}/{database}",
            f"postgresql://postgres@127.0.0.1:{port}/{database}")


def _refusal(opener: Callable[[Settings], Store], settings: Settings) -> str:
    with pytest.raises(ConfigError) as caught:
        opener(settings).close()
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message
    return message


@pytest.mark.parametrize("store", ["audit", "registry", "runs"])
def test_each_store_names_the_setting_it_was_opened_from(store: str, tmp_path: Path) -> None:
    (auth, auth_shown), (runs, runs_shown) = _down("ib_auth"), _down("ib_runs")
    settings = Settings(state_dir=tmp_path, database_url=runs, auth_database_url=auth)
    where, setting = (runs_shown, RUNS) if store == "runs" else (auth_shown, AUTH)
    assert _refusal(OPENERS[store], settings).startswith(
        f"cannot reach the database at {where} ({setting}): ")


@pytest.mark.parametrize("store", ["audit", "registry", "runs"])
def test_unset_the_auth_database_is_the_run_logs_and_says_so(store: str,
                                                             tmp_path: Path) -> None:
    runs, shown = _down("ib_one")
    settings = Settings(state_dir=tmp_path, database_url=runs)
    setting = RUNS if store == "runs" else FALLBACK
    assert _refusal(OPENERS[store], settings).startswith(
        f"cannot reach the database at {shown} ({setting}): ")


def test_only_the_auth_database_set_names_it(tmp_path: Path) -> None:
    auth, shown = _down("ib_auth")
    settings = Settings(state_dir=tmp_path, auth_database_url=auth)
    for store in ("audit", "registry"):
        assert _refusal(OPENERS[store], settings).startswith(
            f"cannot reach the database at {shown} ({AUTH}): ")


def test_a_url_given_as_such_names_no_setting() -> None:
    url, shown = _down("ib_plain")
    with pytest.raises(ConfigError) as caught:
        AuditStore(url)
    assert str(caught.value).startswith(f"cannot reach the database at {shown}: ")


def test_the_setting_stays_with_the_url() -> None:
    url = DatabaseUrl("postgresql://a@db/auth", RUNS, AUTH)
    for kept in (copy.deepcopy(url), pickle.loads(pickle.dumps(url))):
        assert (kept, kept.setting, kept.instead_of, kept.source) == (url, RUNS, AUTH, FALLBACK)
    assert url == "postgresql://a@db/auth" and isinstance(url, str)


@pytest.mark.parametrize("command", [("keys", "list"), ("audit", "query")])
def test_the_auth_hosts_commands_name_its_setting(command: tuple[str, ...],
                                                  tmp_path: Path) -> None:
    """As an administrator on the auth host meets it: the auth database down, the run log's
    setting present too, and no state directory (the stores are not there)."""
    (auth, shown), (runs, _) = _down("ib_auth"), _down("ib_runs")
    env = clean_env(INFRABOT_AUTH_DATABASE_URL=auth, INFRABOT_DATABASE_URL=runs,
                    INFRABOT_STATE_DIR=str(tmp_path / "none"))
    line = infrabot(*command, env=env, cwd=tmp_path).error_line()
    assert f"cannot reach the database at {shown} ({AUTH}): " in line, line
    assert "s3cret" not in line and not (tmp_path / "none").exists()
