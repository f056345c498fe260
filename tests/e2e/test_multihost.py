"""Proof that nothing is shared (issue 12): serve, one worker per agent and the CI simulator
each run as their own process, with their own empty state directory, each in its own network
namespace (a host), reaching Redis and PostgreSQL on a "db" host over veth addresses.

The post-deploy run succeeds; no state directory holds another component's private key; and
CleanupAgent's host, signing an assertion with its own key but naming ``agent:infrabot``, is
refused ``invalid_client`` with the refusal in the audit trail (read from PostgreSQL).
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

import pytest

from bench._procs import Processes
from e2e._harness import INFRABOT, SECRET, assert_post_deploy_audit, clean_env
from e2e._netns import Network, PostgresCluster, hosts, start_redis, unavailable, wait_for
from orchestrator.audit import AuditStore
from orchestrator.runs import RunStore

AGENTS = ("infrabot", "argocd", "scanner", "cleanup")  # post-deploy's (no rollback: no regression)
WORKERS = tuple(f"w-{agent}" for agent in AGENTS)
DATABASE = "ib_mh"
COMMAND_TIMEOUT = 60.0

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
    redis_url = f"redis://{db}:6379/0"
    postgres = PostgresCluster(network, "db")
    states = {host: tmp_path / host for host in ("serve", *WORKERS, "ci")}
    handoff = tmp_path / "handoff"  # what an administrator carries between hosts
    for path in (*states.values(), handoff):
        path.mkdir()

    def env(host: str) -> dict[str, str]:
        return clean_env(INFRABOT_STATE_DIR=str(states[host]), INFRABOT_BROKER_URL=redis_url,
                         INFRABOT_REDIS_URL=redis_url,
                         INFRABOT_DATABASE_URL=postgres.url(DATABASE),
                         INFRABOT_HOST=network.hosts["serve"], INFRABOT_WEBHOOK_SECRET=SECRET,
                         INFRABOT_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")

    def run(host: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(network.on(host, str(INFRABOT), *args), env=env(host),
                              cwd=states[host], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
        assert done.returncode == 0, f"{host}: infrabot {' '.join(args)}\n{done.stderr}"
        return done

    run_id: str | None = None
    with Processes(logs=tmp_path / "logs", cwd=tmp_path) as procs:
        try:
            # db: PostgreSQL and Redis of this test's own, on the db host's address only
            postgres.start(DATABASE)
            start_redis(procs, network, "db")

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
                with RunStore(postgres.socket_url(DATABASE)) as runs:
                    finished = runs.get(run_id) if run_id is not None else None
                with AuditStore(postgres.socket_url(DATABASE)) as audit:
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
