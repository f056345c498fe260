"""Proof that nothing is shared (issue 12): serve, one worker per agent and the CI simulator
each run as their own process, with their own empty state directory, each in its own network
namespace (a host), reaching Redis and PostgreSQL on a "db" host over veth addresses.

Each host gets only the stores it needs (docs/deploy.md): the auth database (audit trail, client
registry) and the registry's Redis (on serve's loopback) are serve's alone; workers get the run
log's role and the broker; ci a role that may only read the run log. The post-deploy run
(a fan-out) succeeds; no state directory holds another component's private key; CleanupAgent's
host, signing an assertion with its own key but naming ``agent:infrabot``, is refused
``invalid_client`` with the refusal in the audit trail (read from PostgreSQL); and that host can
neither register an orchestrator key, nor open the auth database, nor reach the registry.
Skips with the reason where network namespaces are unavailable (not root, no ``ip netns``),
except under ``CI=true``, where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench._procs import Processes
from e2e._harness import INFRABOT, SECRET, assert_post_deploy_audit, clean_env
from e2e._netns import Network, PostgresCluster, hosts, start_redis, unavailable, wait_for
from orchestrator.audit import AuditStore
from orchestrator.runs import RunStore
from tests.stores._separated import CI_READER, CI_READER_IN_RUNS, SEPARATION

AGENTS = ("infrabot", "argocd", "scanner", "cleanup")  # post-deploy's (no rollback: no regression)
WORKERS = tuple(f"w-{agent}" for agent in AGENTS)
DATABASE = "ib_mh"  # the cluster's first database (unused)
AUTH, RUNS = "ib_auth", "ib_runs"  # databases and their owning roles (docs/deploy.md)
CI = "ib_ci"  # ci's role: reads the run log, no more
PASSWORDS = {"auth_password": "auth-secret-4f1c", "runs_password": "runs-secret-9b2e",
             "ci_password": "ci-secret-31d7"}
REGISTRY_PORT = 6380  # the registry's Redis, on serve's loopback only
COMMAND_TIMEOUT = 60.0

# What CleanupAgent's host tries on the registry's Redis: on its own loopback, then serve's.
REACH_REGISTRY = """
import json, sys, redis
out = {}
for host in ("127.0.0.1", sys.argv[1]):
    try:
        redis.Redis(host=host, port=int(sys.argv[2]), socket_connect_timeout=2).ping()
        out[host] = "reached"
    except redis.RedisError:
        out[host] = "unreachable"
print(json.dumps(out))
"""

# What ci's host tries on the run log with its role: end every run failed.
TAMPER = """
import json, sys, psycopg
try:
    with psycopg.connect(sys.argv[1], autocommit=True, connect_timeout=5) as conn:
        conn.execute("UPDATE runs SET status = 'failed'")
    print(json.dumps({"refused": None}))
except psycopg.Error as exc:
    print(json.dumps({"refused": type(exc).__name__}))
"""

# What CleanupAgent's host does to pose as InfraBot: its own key, InfraBot's name.
IMPOSTOR = """
import json, sys
from pathlib import Path
from orchestrator import errors
from orchestrator.client import AuthClient
from orchestrator.keystore import client_keys_dir, load_client_key
state = Path(sys.argv[1])
auth = json.loads((state / "endpoints.json").read_text())["auth"]
key = load_client_key(client_keys_dir(state / "keys"), "agent:cleanup")
try:
    with AuthClient(auth, "agent:infrabot", key) as client:
        client.exchange("x", audience="agent:argocd")
    print(json.dumps({"refused": False}))
except errors.InvalidClient as exc:
    print(json.dumps({"refused": True, "code": exc.code, "reason": exc.reason}))
"""


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the multi-host test: {reason}")
        pytest.skip(f"no network namespaces: {reason}")
    with hosts("db", "serve", *WORKERS, "ci") as made:
        yield made


def private_keys(state_dir: Path) -> set[str]:
    """Every file under ``state_dir`` that holds a private key (by name or by content)."""
    found = set()
    for path in state_dir.rglob("*"):
        if path.is_file() and (path.suffix in (".pem", ".key")
                               or b"PRIVATE KEY" in path.read_bytes()):
            found.add(str(path.relative_to(state_dir)))
    return found


def test_each_component_on_its_own_host_with_its_own_keys(network: Network,
                                                          tmp_path: Path) -> None:
    db = network.hosts["db"]
    postgres = PostgresCluster(network, "db")
    states = {host: tmp_path / host for host in ("serve", *WORKERS, "ci")}
    handoff = tmp_path / "handoff"  # what an administrator carries between hosts
    for path in (*states.values(), handoff):
        path.mkdir()

    def role_url(role: str, database: str) -> str:
        return f"postgresql://{role}:{PASSWORDS[f'{role[3:]}_password']}@{db}:5432/{database}"

    def env(host: str, **extra: str) -> dict[str, str]:
        # every host: the run log; ci with a role that may only read it
        stores = {"INFRABOT_DATABASE_URL": role_url(CI if host == "ci" else RUNS, RUNS)}
        if host != "ci":  # serve and the workers: Celery's Redis broker
            stores.update(INFRABOT_BROKER_URL=f"redis://{db}:6379/0")
        if host == "serve":  # the auth stores: serve's alone
            stores.update(INFRABOT_AUTH_DATABASE_URL=role_url(AUTH, AUTH),
                          INFRABOT_REDIS_URL=f"redis://127.0.0.1:{REGISTRY_PORT}/0")
        return clean_env(INFRABOT_STATE_DIR=str(states[host]), **stores,
                         INFRABOT_HOST=network.hosts["serve"], INFRABOT_WEBHOOK_SECRET=SECRET,
                         INFRABOT_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra)

    def attempt(host: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(network.on(host, str(INFRABOT), *args), env=env(host, **extra),
                              cwd=states[host], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)

    def run(host: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = attempt(host, *args)
        assert done.returncode == 0, f"{host}: infrabot {' '.join(args)}\n{done.stderr}"
        return done

    run_id: str | None = None
    with Processes(logs=tmp_path / "logs", cwd=tmp_path) as procs:
        try:
            # db: PostgreSQL (two databases, three roles) and Celery's Redis, on db's address
            postgres.start(DATABASE)
            with psycopg.connect(postgres.socket_url("postgres"), autocommit=True) as admin:
                for statement in (*SEPARATION, *CI_READER):
                    admin.execute(statement.format(auth=AUTH, runs=RUNS, ci=CI, **PASSWORDS))
                with psycopg.connect(postgres.socket_url(RUNS), autocommit=True) as runs_db:
                    for statement in CI_READER_IN_RUNS:
                        runs_db.execute(statement.format(runs=RUNS, ci=CI))
                with (postgres.data / "pg_hba.conf").open("a") as hba:
                    hba.write(f"host all all {db.rsplit('.', 1)[0]}.0/24 scram-sha-256\n")
                admin.execute("SELECT pg_reload_conf()")
            start_redis(procs, network, "db")
            # serve's host: the registry's Redis, on its loopback only
            wait_for(procs.start("registry", network.on(
                "serve", "redis-server", "--bind", "127.0.0.1", "--port", str(REGISTRY_PORT),
                "--save", "", "--appendonly", "no"), dict(os.environ)),
                "Ready to accept connections", "the registry's redis-server")

            # serve: its servers on its own address; no agent key is made there
            serve = procs.start("serve", network.on(
                "serve", str(INFRABOT), "serve", "--port-base", "0"), env("serve"))
            endpoints = states["serve"] / "endpoints.json"
            wait_for(serve, "endpoints written to", "infrabot serve")
            urls = json.loads(endpoints.read_text())
            assert all(url.startswith(f"http://{network.hosts['serve']}:")
                       for url in urls.values()), urls

            # each worker host makes its agent's key; serve's side registers the public half
            for agent, host in zip(AGENTS, WORKERS, strict=True):
                jwks = handoff / f"{agent}.jwks"
                jwks.write_text(run(host, "keys", "init", f"agent:{agent}").stdout)
                run("serve", "keys", "register", f"agent:{agent}", "--jwks", str(jwks))
            listed = json.loads(run("serve", "keys", "list", "--json").stdout)
            assert sorted(e["client_id"] for e in listed) == [
                "agent:argocd", "agent:cleanup", "agent:infrabot", "agent:scanner",
                "client:orchestrator"]
            assert not (states["serve"] / "keys" / "client_registry.json").exists()

            # CleanupAgent's host tries the reviewer's attack: a rogue orchestrator key ...
            rogue = handoff / "o.jwks"
            rogue.write_text(run("w-cleanup", "keys", "init", "client:orchestrator",
                                 "--state-dir", str(tmp_path / "evil")).stdout)
            refused = attempt("w-cleanup", "keys", "register", "client:orchestrator",
                              "--jwks", str(rogue))
            assert refused.returncode == 1 and refused.stderr.startswith(
                "Error: refused: no authorization server's registry here") and \
                refused.stderr.count("\n") == 1, refused.stderr
            # ... aimed at the auth database with the only role it has: PostgreSQL refuses
            aimed = attempt("w-cleanup", "keys", "register", "client:orchestrator", "--jwks",
                            str(rogue), INFRABOT_AUTH_DATABASE_URL=role_url(RUNS, AUTH))
            assert f'permission denied for database "{AUTH}"' in aimed.stderr, aimed.stderr
            assert PASSWORDS["runs_password"] not in aimed.stderr
            # ... and the registry's Redis (revocations) is out of its reach
            reached = subprocess.run(network.on(
                "w-cleanup", sys.executable, "-c", REACH_REGISTRY, network.hosts["serve"],
                str(REGISTRY_PORT)), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                check=False)
            assert set(json.loads(reached.stdout).values()) == {"unreachable"}, reached.stderr
            assert json.loads(run("serve", "keys", "list", "--json").stdout) == listed

            # endpoints.json (URLs only) to every other host; one worker per agent
            for host in (*WORKERS, "ci"):
                shutil.copy(endpoints, states[host] / "endpoints.json")
            workers = [procs.start(host, network.on(
                host, str(INFRABOT), "worker", "-Q", agent, "--loglevel", "INFO"), env(host))
                for agent, host in zip(AGENTS, WORKERS, strict=True)]
            for proc in workers:
                wait_for(proc, " ready.", f"infrabot worker ({proc.name})")

            # ci: one signed deployment event; it waits for the run (in PostgreSQL)
            sent = run("ci", "simulate", "deploy", "--user", "sam", "--json",
                       "--timeout", "45")
            report = json.loads(sent.stdout)
            assert (report["accepted"], report["statuses"]) == (1, {"succeeded": 1}), report
            [run_id] = report["run_ids"]
            # ... with a role that reads the run log and may write nothing of it
            tampered = subprocess.run(network.on("ci", sys.executable, "-c", TAMPER,
                                                 role_url(CI, RUNS)),
                                      env=env("ci"), capture_output=True, text=True,
                                      timeout=COMMAND_TIMEOUT, check=False)
            assert json.loads(tampered.stdout) == {"refused": "InsufficientPrivilege"}, \
                tampered.stderr

            # CleanupAgent's host poses as InfraBot with its own key
            posed = subprocess.run(network.on("w-cleanup", sys.executable, "-c", IMPOSTOR,
                                              str(states["w-cleanup"])),
                                   env=env("w-cleanup"), capture_output=True, text=True,
                                   timeout=COMMAND_TIMEOUT, check=False)
            assert json.loads(posed.stdout) == {"refused": True, "code": "invalid_client",
                                                "reason": "unknown_key"}, posed.stderr
        except BaseException:
            print(postgres.log(), *(f"--- {p.name}\n{p.output()}" for p in procs.procs),
                  sep="\n")
            raise
        finally:
            procs.close()
            try:  # what the run left in PostgreSQL, read through the cluster's unix socket
                with RunStore(postgres.socket_url(RUNS)) as runs:
                    finished = runs.get(run_id) if run_id is not None else None
                with AuditStore(postgres.socket_url(AUTH)) as audit:
                    records = audit.query()
            finally:
                postgres.close()

    # the whole story, each call by its agent for sam; the impostor's refusal, audited
    assert finished is not None and finished.status == "succeeded"
    assert_post_deploy_audit([r for r in records if r.run_id == run_id], run_id)
    refused = [r for r in records if r.reason == "unknown_key"]
    assert [(r.service, r.action, r.resource, r.decision, r.status, r.performed_by)
            for r in refused] == [  # no client is named: none was authenticated
        ("authserver", "token", "agent:argocd", "deny", 401, None)], refused

    # every host holds its own private keys and no other component's
    held = {host: private_keys(path) for host, path in states.items()}
    signing = {key for key in held["serve"] if key.startswith("keys/signing/")}
    assert signing and all(key.endswith(".pem") for key in signing), held
    assert held == {
        # serve's own: the orchestrator's client key, the token signing keys and the audit
        # key that signs its trail's checkpoints
        "serve": {"keys/clients/client_orchestrator.pem", "keys/audit/audit.pem", *signing},
        # each worker host: its agent's client key and its DPoP key (docs/dpop.md), no other
        **{host: {f"keys/clients/agent_{agent}.pem", f"keys/dpop/agent_{agent}.pem"}
           for agent, host in zip(AGENTS, WORKERS, strict=True)},
        "ci": set(),
    }
