"""The ci host's role on the run log (docs/deploy.md, step 1): ``infrabot simulate`` only follows
the runs it sent, so it is given a role that reads the run log and nothing more. The role set up
as the doc says (the same statements, with unique names, on the test server): it reads what the
owner role (serve, the workers) wrote, including tables made after the grant; PostgreSQL refuses
it any write (``permission denied for table runs``); and ``simulate`` follows its runs with it,
opening the run log read-only (a writable open would need DDL, refused). A run log not made yet
is one line saying what to do, and nothing is sent or made."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from orchestrator.ci._load import EventSpec, run_load
from orchestrator.errors import ConfigError, StoreMissing, Unavailable
from orchestrator.runs import RunStore
from tests._events import detail
from tests._json_server import QuietHandler, answer, json_server
from tests._postgres import _connect, server_url
from tests.cli._cli import clean_env, infrabot, serving
from tests.runs.conftest import Origin
from tests.stores._separated import (
    CI_READER,
    CI_READER_IN_RUNS,
    Separated,
    _admin_url,
    role_url,
    separated_databases,
)

DEPLOY_DOC = Path(__file__).parents[2] / "docs" / "deploy.md"
SECRET = "a-sender-secret-of-32-characters-or-more"


@dataclass(frozen=True)
class Reader:
    dbs: Separated
    ci: str  # the ci role's name
    ci_url: str  # ci's credentials on the run log: its INFRABOT_DATABASE_URL

    @property
    def owner_url(self) -> str:  # serve's and the workers' credentials: the tables' owner
        return self.dbs.runs_url


@pytest.fixture
def reader() -> Iterator[Reader]:
    """The separation of docs/deploy.md plus the ci role, granted before any table exists (as
    the doc's step 1 runs before serve); the databases dropped first, then the roles."""
    ci = f"h_ci_{uuid.uuid4().hex[:10]}"
    password = secrets.token_hex(12)
    with _connect(server_url()) as admin, contextlib.ExitStack() as stack:
        stack.callback(admin.execute, f"DROP ROLE IF EXISTS {ci}")  # after the databases
        dbs = stack.enter_context(separated_databases())
        names = {"ci": ci, "ci_password": password, "runs": dbs.runs}
        for statement in CI_READER:
            admin.execute(statement.format(**names))
        with psycopg.connect(_admin_url(dbs.runs), autocommit=True, connect_timeout=3) as db:
            for statement in CI_READER_IN_RUNS:
                db.execute(statement.format(**names))
        yield Reader(dbs, ci, role_url(ci, password, dbs.runs))


def _statements(sql: str) -> set[str]:
    """SQL statements, comments and psql's meta-commands out, whitespace collapsed."""
    lines = [line.split("--")[0] for line in sql.splitlines() if not line.startswith("\\")]
    return {" ".join(s.split()) for s in " ".join(lines).split(";") if s.strip()}


def test_the_role_set_up_here_is_the_one_docs_deploy_gives() -> None:
    block = re.search(r"sudo -u postgres psql .*?<<'SQL'\n(.*?)\nSQL\n", DEPLOY_DOC.read_text(),
                      re.DOTALL)
    assert block is not None, "docs/deploy.md step 1 has no psql block"
    documented = _statements(block.group(1))
    names = {"ci": "infrabot_ci", "ci_password": "CI_PW", "runs": "infrabot_runs"}
    missing = {s.format(**names) for s in CI_READER + CI_READER_IN_RUNS} - documented
    assert not missing, missing
    assert "\\c infrabot_runs" in block.group(1)  # the grants in the run log's database
    hba = "host infrabot_runs infrabot_ci 10.0.0.3/32 scram-sha-256"  # from ci only
    assert hba in " ".join(DEPLOY_DOC.read_text().split())


def _serve_a_run(owner: RunStore, run_id: str, *, finish: bool = True) -> None:
    """What serve and the workers write of one run, with the owner role."""
    owner.create(run_id, workflow="post-deploy", event=Origin())
    owner.add_event(run_id, None, detail("started", delivery=f"d-{run_id}"))
    owner.mark_running(run_id)
    owner.add_event(run_id, "agent:infrabot", detail("exchanged"))
    if finish:
        owner.finish(run_id, "succeeded", "ok", agent="agent:infrabot")


def test_the_ci_role_reads_the_run_log_its_owner_wrote(reader: Reader) -> None:
    with RunStore(reader.owner_url) as owner:
        _serve_a_run(owner, "run-1")
    with RunStore(reader.ci_url, read_only=True) as runs:
        run = runs.get("run-1")
        assert run is not None
        assert (run.status, run.reason, run.workflow) == ("succeeded", "ok", "post-deploy")
        assert [e.kind for e in run.events] == ["started", "exchanged", "finished"]
        assert [r.run_id for r in runs.list()] == ["run-1"]
        with pytest.raises(Unavailable):  # refused before it is sent
            runs.finish("run-1", "failed", "forged")
    # Opened as a writer would (what simulate did), the role cannot apply the schema's DDL.
    with pytest.raises(ConfigError) as refused:
        RunStore(reader.ci_url)
    assert "permission denied" in refused.value.message


@pytest.mark.parametrize(("sql", "table"), [
    (("INSERT INTO runs (run_id, workflow, \"user\", status, created_at) "
      "VALUES ('run-x', 'w', 'user:sam', 'succeeded', '2026-01-01')"), "runs"),
    ("UPDATE runs SET status = 'failed', reason = 'forged'", "runs"),
    ("DELETE FROM events", "events"),
    ("UPDATE journal SET run_id = run_id", "journal"),
])
def test_postgresql_refuses_the_ci_role_any_write(reader: Reader, sql: str, table: str) -> None:
    with RunStore(reader.owner_url) as owner:
        _serve_a_run(owner, "run-1")
    # a plain session (not the store's READ ONLY one): the grants alone refuse it
    with psycopg.connect(reader.ci_url, autocommit=True, connect_timeout=3) as ci, \
            pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        ci.execute(sql)
    assert str(refused.value).startswith(f"permission denied for table {table}")
    with psycopg.connect(reader.ci_url, autocommit=True, connect_timeout=3) as ci, \
            pytest.raises(psycopg.errors.InsufficientPrivilege) as dropped:
        ci.execute("DROP TABLE events")
    assert str(dropped.value).startswith("must be owner of table events")
    with RunStore(reader.ci_url, read_only=True) as runs:
        run = runs.get("run-1")
        assert run is not None and (run.status, len(run.events)) == ("succeeded", 3)


def test_tables_made_after_the_grant_are_readable(reader: Reader) -> None:
    assert reader.dbs.tables(reader.dbs.runs) == {}  # granted before any table was made
    with RunStore(reader.owner_url):  # serve's first use: the owner makes the tables
        pass
    with psycopg.connect(reader.owner_url, autocommit=True, connect_timeout=3) as owner:
        owner.execute("CREATE TABLE made_later (x INTEGER)")  # a later version's table
        owner.execute("INSERT INTO made_later VALUES (7)")
    tables = reader.dbs.tables(reader.dbs.runs)
    assert {"runs", "events", "journal", "spans", "schema_versions", "made_later"} <= set(tables)
    with psycopg.connect(reader.ci_url, autocommit=True, connect_timeout=3) as ci:
        for table in tables:
            ci.execute(f'SELECT count(*) FROM "{table}"')
        assert ci.execute("SELECT x FROM made_later").fetchall() == [(7,)]


class Receiver:
    """A webhook receiver on loopback standing in for serve's: each POST is a run written with
    the owner role (``serve`` would start it; ``finish``: and its worker end it shortly after),
    answered 202 with its id."""

    def __init__(self, record: Callable[[str], None]) -> None:
        self.record = record
        self.posts = 0
        self.lock = threading.Lock()

    def next_id(self) -> str:
        with self.lock:
            self.posts += 1
            return f"run-{self.posts:04x}"


@contextlib.contextmanager
def receiving(record: Callable[[str], None]) -> Iterator[tuple[str, Receiver]]:
    receiver = Receiver(record)

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # /health
            answer(self, 200, {"status": "ok"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            run_id = receiver.next_id()
            receiver.record(run_id)
            answer(self, 202, {"run_id": run_id})

    with json_server(Handler) as url:
        yield url, receiver


def test_simulates_load_run_follows_its_runs_with_the_ci_role(reader: Reader) -> None:
    with RunStore(reader.owner_url) as owner:
        def record(run_id: str) -> None:  # started now, ended by "its worker" a little later
            _serve_a_run(owner, run_id, finish=False)
            threading.Timer(0.3, owner.finish, (run_id, "succeeded", "ok")).start()

        with receiving(record) as (url, receiver):
            events = [EventSpec("sam", "service-x", "prod", "ci_pipeline", f"{i:07x}")
                      for i in range(3)]
            report = run_load(url, SECRET.encode(), reader.ci_url, events, rate=0,
                              timeout=20, sleep=lambda _: None)
        time.sleep(0.1)  # no timer left writing when the owner's store closes
    assert receiver.posts == 3
    assert (report.accepted, dict(report.statuses), report.unfinished) == (
        3, {"succeeded": 3}, 0)
    assert report.exchanges == 3


def _pg_target(url: str) -> str:
    """The run log's database as simulate names it: no password."""
    parts = urlsplit(url)
    return f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}"


def test_simulate_before_serve_made_the_run_log_is_one_line(reader: Reader,
                                                           tmp_path: Path) -> None:
    with receiving(lambda _: None) as (url, receiver):
        env = clean_env(INFRABOT_DATABASE_URL=reader.ci_url, INFRABOT_WEBHOOK_SECRET=SECRET,
                        INFRABOT_WEBHOOKS_PORT=url.rsplit(":", 1)[1],
                        INFRABOT_STATE_DIR=str(tmp_path / "ci"))
        result = infrabot("simulate", "deploy", "--user", "sam", env=env, cwd=tmp_path)
    assert result.returncode == 1, result
    assert result.error_line() == (
        f"{_pg_target(reader.ci_url)} is not a usable run log: it has no runs tables; start "
        "`infrabot serve` first (it makes the run log), or set INFRABOT_DATABASE_URL to the "
        "database serve uses")
    assert receiver.posts == 0  # nothing sent
    assert reader.dbs.tables(reader.dbs.runs) == {}  # nothing made


def test_simulate_without_a_run_log_file_is_one_line_and_makes_none(tmp_path: Path) -> None:
    state = tmp_path / "ci"
    state.mkdir(mode=0o700)
    with receiving(lambda _: None) as (url, receiver):
        (state / "endpoints.json").write_text(json.dumps({"auth": url, "webhooks": url}))
        result = infrabot("simulate", "deploy", "--user", "sam", "--timeout", "2",
                          env=clean_env(INFRABOT_STATE_DIR=str(state),
                                        INFRABOT_WEBHOOK_SECRET=SECRET), cwd=tmp_path)
    assert result.returncode == 1, result
    assert result.error_line() == (
        f"no run log at {state / 'runs.sqlite3'}; start `infrabot serve` first (it makes the "
        "run log), or set INFRABOT_DATABASE_URL to the database serve uses")
    assert receiver.posts == 0
    assert not (state / "runs.sqlite3").exists()


def test_simulate_deploy_against_serve_with_only_the_ci_role(reader: Reader,
                                                            tmp_path: Path) -> None:
    """serve writes the run log as its owner; the simulator, on "another host", has only the
    ci role: its run is followed to the end, and nothing it did needed a write."""
    served = tmp_path / "auth"
    served.mkdir()
    with serving(served, clean_env(INFRABOT_DATABASE_URL=reader.owner_url,
                                   INFRABOT_STATE_DIR=str(served))) as urls:
        simulator = clean_env(INFRABOT_DATABASE_URL=reader.ci_url,
                              INFRABOT_STATE_DIR=str(tmp_path / "ci"),
                              INFRABOT_WEBHOOKS_PORT=urls["webhooks"].rsplit(":", 1)[1],
                              INFRABOT_WEBHOOK_SECRET=(served / "webhook_secret").read_text()
                              .strip())
        summary = infrabot("simulate", "deploy", "--user", "sam", "--json", env=simulator,
                           cwd=tmp_path, timeout=90).ok().json()
    assert isinstance(summary, dict)
    assert summary["statuses"] == {"succeeded": 1}
    with RunStore(reader.ci_url, read_only=True) as runs:
        [run] = runs.list()
        assert (run.run_id, run.status) == (summary["run_ids"][0], "succeeded")


def test_a_run_log_partly_there_is_not_taken_for_one_not_made_yet(reader: Reader,
                                                                    tmp_path: Path) -> None:
    """A run log none of whose tables are there is StoreMissing (simulate: start serve first);
    one that lost some of them is damage, a plain ConfigError naming the database."""
    path = tmp_path / "runs.sqlite3"
    with pytest.raises(StoreMissing):
        RunStore(path, read_only=True)
    with pytest.raises(StoreMissing):
        RunStore(reader.ci_url, read_only=True)
    for target in (path, reader.owner_url):
        RunStore(target).close()  # made by its owner
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE events")
    conn.close()
    with psycopg.connect(reader.owner_url, autocommit=True, connect_timeout=3) as owner:
        owner.execute("DROP TABLE events")
    for target in (path, reader.ci_url):
        with pytest.raises(ConfigError) as partly:
            RunStore(target, read_only=True)
        assert not isinstance(partly.value, StoreMissing)
        assert partly.value.message.endswith("is not a usable run log: it has no runs tables")
