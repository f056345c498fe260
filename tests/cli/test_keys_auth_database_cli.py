"""A worker host's settings (the run log's database and the broker, as docs/deploy.md hands them
out) reach none of the authorization server's stores: ``infrabot keys register|revoke`` there
refuses in one line and writes nothing anywhere, its database role cannot open the auth database
even when aimed at it, and its fan-outs need no Redis (tests/e2e/test_graph_distributed.py runs
them so). On the auth host (``INFRABOT_AUTH_DATABASE_URL``) the same commands write the auth
database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from infrabot.celery_app import create_celery
from orchestrator.config import Settings
from tests.cli._cli import Result, clean_env, infrabot
from tests.stores._separated import Separated, separated_databases

BROKER = "amqp://guest:guest@127.0.0.1:1//"  # never reached: keys commands do not publish


@pytest.fixture
def dbs() -> Iterator[Separated]:
    with separated_databases() as made:
        yield made


def refusal(state: Path, command: str) -> str:
    return (f"refused: no authorization server's registry here (INFRABOT_AUTH_DATABASE_URL is "
            f"unset and {state} is not serve's state directory): run `infrabot keys {command}` "
            "on the auth host, or set INFRABOT_AUTH_DATABASE_URL to serve's auth database")


def test_a_worker_host_cannot_register_or_revoke_a_client_key(dbs: Separated,
                                                              tmp_path: Path) -> None:
    auth_state, worker_state = tmp_path / "auth", tmp_path / "w-cleanup"
    auth = clean_env(INFRABOT_STATE_DIR=str(auth_state), INFRABOT_BROKER_URL=BROKER,
                     INFRABOT_DATABASE_URL=dbs.runs_url, INFRABOT_AUTH_DATABASE_URL=dbs.auth_url)
    worker = clean_env(INFRABOT_STATE_DIR=str(worker_state), INFRABOT_BROKER_URL=BROKER,
                       INFRABOT_DATABASE_URL=dbs.runs_url)

    def keys(env: dict[str, str], *args: str) -> Result:
        return infrabot("keys", *args, env=env)

    # the auth host: the orchestrator's real key, registered in the auth database
    real = tmp_path / "orchestrator.jwks"
    real.write_text(keys(auth, "init", "client:orchestrator").ok().stdout)
    kid = json.loads(real.read_text())["keys"][0]["kid"]
    assert keys(auth, "register", "client:orchestrator", "--jwks", str(real)).ok().stdout == \
        f"registered: client:orchestrator {kid} ES256\n"
    before = dbs.tables(dbs.auth)
    assert before["client_keys"] == 1

    # the reviewer's attack, from a worker host: a rogue orchestrator key, registered
    rogue = tmp_path / "o.jwks"
    rogue.write_text(keys(worker, "init", "client:orchestrator").ok().stdout)
    assert keys(worker, "register", "client:orchestrator", "--jwks", str(rogue)
                ).error_line() == refusal(worker_state, "register")
    assert keys(worker, "revoke", "client:orchestrator", kid).error_line() == \
        refusal(worker_state, "revoke")
    assert keys(worker, "list").error_line() == refusal(worker_state, "list")  # makes no table
    assert dbs.tables(dbs.auth) == before  # nothing written to the auth database ...
    assert dbs.tables(dbs.runs) == {}  # ... nor a registry made in the run log's
    assert not (worker_state / "keys" / "client_registry.json").exists()

    # aimed at the auth database with the only credentials a worker host has: refused by
    # PostgreSQL itself (CONNECT revoked from PUBLIC), in one line without the password
    aimed = {**worker, "INFRABOT_AUTH_DATABASE_URL": dbs.runs_role_on_auth}
    line = keys(aimed, "register", "client:orchestrator", "--jwks", str(rogue)).error_line()
    assert line.startswith("bad_configuration: cannot reach the database at ") and \
        f'permission denied for database "{dbs.auth}"' in line, line
    assert str(urlsplit(dbs.runs_role_on_auth).password) not in line
    assert dbs.tables(dbs.auth) == before


def test_no_process_keeps_celery_results_in_any_redis(tmp_path: Path) -> None:
    """A fan-out's join goes out from the run log (agents/tasks.py): no Celery app has a result
    backend, whatever Redis its settings name (the registry's, or a Redis broker)."""
    for settings in (Settings(state_dir=tmp_path, broker_url=BROKER),
                     Settings(state_dir=tmp_path, broker_url=BROKER,
                              redis_url="redis://127.0.0.1:2/0"),
                     Settings(state_dir=tmp_path, broker_url="redis://127.0.0.1:2/0"),
                     Settings(state_dir=tmp_path)):
        conf = create_celery(settings).conf
        assert (conf.result_backend, conf.task_ignore_result) == (None, True)
