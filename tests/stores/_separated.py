"""The storage-level separation of docs/deploy.md ("The databases"), made on the test server:
two databases, each owned by a role of its own, and ``CONNECT`` revoked from ``PUBLIC`` on both,
so the run log's role (the workers') cannot even open the authorization server's database.
Roles and databases are named ``h_sep_*_<random>`` and dropped after the test."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests._postgres import _connect, server_url

# What docs/deploy.md tells the database's administrator to run, with {auth} and {runs} the
# names of the two roles and of their databases.
SEPARATION = (
    "CREATE ROLE {auth} LOGIN PASSWORD '{auth_password}'",
    "CREATE ROLE {runs} LOGIN PASSWORD '{runs_password}'",
    "CREATE DATABASE {auth} OWNER {auth}",
    "REVOKE CONNECT, TEMPORARY ON DATABASE {auth} FROM PUBLIC",
    "CREATE DATABASE {runs} OWNER {runs}",
    "REVOKE CONNECT, TEMPORARY ON DATABASE {runs} FROM PUBLIC",
)
# What docs/deploy.md adds for the ci host's read-only role, with {ci} its name and {runs} the
# run log's role and database: on the server, then connected to the run log's database.
CI_READER = (
    "CREATE ROLE {ci} LOGIN PASSWORD '{ci_password}'",
    "GRANT CONNECT ON DATABASE {runs} TO {ci}",
)
CI_READER_IN_RUNS = (
    "GRANT USAGE ON SCHEMA public TO {ci}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {runs} IN SCHEMA public GRANT SELECT ON TABLES TO {ci}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ci}",
)


def role_url(role: str, password: str, database: str) -> str:
    """The test server's URL, as ``role`` (with its password) on ``database``."""
    parts = urlsplit(server_url())
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, f"/{database}", "", ""))


@dataclass(frozen=True)
class Separated:
    auth: str  # the auth role's and its database's name
    runs: str  # the run log's
    auth_url: str  # the auth host's credentials: INFRABOT_AUTH_DATABASE_URL
    runs_url: str  # every host's run log: INFRABOT_DATABASE_URL
    runs_role_on_auth: str  # the run log's credentials, aimed at the auth database

    def tables(self, database: str) -> dict[str, int]:
        """Every table of ``database``'s public schema and its row count (as the superuser)."""
        with psycopg.connect(_admin_url(database), autocommit=True, connect_timeout=3) as db:
            names = [row[0] for row in db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
            return {name: _count(db, name) for name in sorted(names)}


def _count(db: psycopg.Connection[Any], table: str) -> int:
    row = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return int(row[0]) if row is not None else 0


def _admin_url(database: str) -> str:
    parts = urlsplit(server_url())
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@contextlib.contextmanager
def separated_databases() -> Iterator[Separated]:
    tag = uuid.uuid4().hex[:10]
    auth, runs = f"h_sep_auth_{tag}", f"h_sep_runs_{tag}"
    auth_password, runs_password = secrets.token_hex(12), secrets.token_hex(12)
    with _connect(server_url()) as admin:
        try:
            for statement in SEPARATION:
                admin.execute(statement.format(auth=auth, runs=runs, auth_password=auth_password,
                                               runs_password=runs_password))
            yield Separated(auth, runs, role_url(auth, auth_password, auth),
                            role_url(runs, runs_password, runs),
                            role_url(runs, runs_password, auth))
        finally:
            for database in (auth, runs):
                admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            for role in (auth, runs):
                admin.execute(f"DROP ROLE IF EXISTS {role}")
