"""The authorization server's stores (the client registry, the audit trail) in a database of
their own, ``INFRABOT_AUTH_DATABASE_URL``, apart from the run log that the workers share
(``INFRABOT_DATABASE_URL``): serve opens them there, the run log stays where it was, and the run
log's role (a worker host's credentials) cannot connect to the auth database at all, with the
commands docs/deploy.md gives. Unset, everything is in ``INFRABOT_DATABASE_URL`` as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from infrabot.stack import Stack
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.authserver import SqlClientRegistry, open_registry
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.runs import RunStore
from tests.stores._separated import Separated, separated_databases

AUDIT_TABLES = {"records", "writers", "checkpoints"}
REGISTRY_TABLES = {"client_keys", "revoked_client_keys"}


@pytest.fixture
def dbs() -> Iterator[Separated]:
    with separated_databases() as made:
        yield made


def test_the_auth_stores_follow_their_own_setting(tmp_path: Path) -> None:
    runs, auth = "postgresql://r@db:5432/runs", "postgresql://a@db:5432/auth"
    split = Settings(state_dir=tmp_path, database_url=runs, auth_database_url=auth)
    assert (split.runs_target, split.audit_target, split.registry_target) == (runs, auth, auth)
    one = Settings(state_dir=tmp_path, database_url=runs)  # unset: as before, one database
    assert (one.runs_target, one.audit_target, one.registry_target) == (runs, runs, runs)
    files = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'r'}",
                     auth_database_url=f"sqlite:///{tmp_path / 'a'}")
    assert (files.runs_target, files.audit_target, files.registry_target) == (
        tmp_path / "r" / "runs.sqlite3", tmp_path / "a" / "audit.sqlite3",
        tmp_path / "a" / "clients.sqlite3")
    only_auth = Settings(state_dir=tmp_path, auth_database_url=auth)
    assert (only_auth.runs_target, only_auth.registry_target) == (
        tmp_path / "runs.sqlite3", auth)
    assert isinstance(open_registry(Settings(state_dir=tmp_path, auth_database_url=(
        f"sqlite:///{tmp_path / 'a'}"))), SqlClientRegistry)


def test_serve_opens_the_registry_and_the_audit_trail_in_the_auth_database(
        dbs: Separated, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "auth", database_url=dbs.runs_url,
                        auth_database_url=dbs.auth_url)
    stack = Stack.build(settings)  # what serve assembles: keys, registry, audit store
    try:
        assert stack.registry is not None
        registered = {e.client_id for e in stack.registry.entries()}
        assert "client:orchestrator" in registered
        stack.audit.append(AuditRecord(
            time=datetime.now(UTC), service="authserver", action="token",
            resource="agent:argocd", decision="deny", status=401, reason="unknown_key"))
    finally:
        stack.close()
    with RunStore(settings.runs_target):  # the run log, as every worker opens it
        pass

    auth, runs = dbs.tables(dbs.auth), dbs.tables(dbs.runs)
    assert AUDIT_TABLES | REGISTRY_TABLES <= set(auth)
    assert auth["client_keys"] == len(registered) and auth["records"] >= 1
    assert not (AUDIT_TABLES | REGISTRY_TABLES) & set(runs), runs  # none in the run log's
    assert "runs" in runs and "runs" not in auth
    with AuditStore(dbs.auth_url, read_only=True) as audit:
        assert [r.reason for r in audit.query()][-1:] == ["unknown_key"]


def test_the_run_logs_role_cannot_open_the_auth_database(dbs: Separated) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(dbs.runs_role_on_auth, connect_timeout=3)
    assert f'permission denied for database "{dbs.auth}"' in str(refused.value)
    for opening in (lambda: SqlClientRegistry(dbs.runs_role_on_auth),
                    lambda: AuditStore(dbs.runs_role_on_auth)):
        with pytest.raises(ConfigError) as caught:
            opening()
        assert "permission denied for database" in caught.value.message
        assert str(urlsplit(dbs.runs_role_on_auth).password) not in caught.value.message
    # ... and what it is given works: its own database, which the auth role cannot open either
    with RunStore(dbs.runs_url):
        pass
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dbs.auth_url.rsplit("/", 1)[0] + f"/{dbs.runs}", connect_timeout=3)
