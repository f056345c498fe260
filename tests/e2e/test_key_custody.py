"""Key custody with real processes (issue 12): in distributed mode ``serve`` holds no agent's
private key, a worker signs only as its own queues' agents, a misrouted hop fails without
signing, an impostor assertion is refused and audited, and a key rotates with runs in flight.

The workers share serve's state directory only for the run log and endpoints.json until the
run log moves to INFRABOT_DATABASE_URL; their keys are made with ``infrabot keys init`` (or the
same library call) and registered, never by serve."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from bench._procs import Proc, Processes
from e2e._harness import INFRABOT, accepted_run_id, clean_env, deployment
from e2e._processes import Distributed
from infrabot.celery_app import create_celery
from orchestrator import errors
from orchestrator.authserver import StateDirRegistry, open_registry
from orchestrator.client import AuthClient
from orchestrator.keystore import init_client_key, load_client_key

pytestmark = pytest.mark.redis

AGENT_KEY_FILES = {"agent_infrabot.pem", "agent_argocd.pem", "agent_scanner.pem",
                   "agent_rollback.pem", "agent_cleanup.pem"}


def pem_files(state_dir: Path) -> set[str]:
    return {p.name for p in state_dir.rglob("*.pem")}


def keys_cli(d: Distributed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INFRABOT), "keys", *args, "--state-dir", str(d.state_dir)],
                          env=d.env(), capture_output=True, text=True, timeout=60, check=False)


def argocd_tasks_done(proc: Proc) -> int:
    return sum(1 for line in proc.output().splitlines()
               if "Task agents.argocd[" in line and " succeeded in " in line)


def test_distributed_serve_makes_and_holds_no_agent_key(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    assert pem_files(d.state_dir) & AGENT_KEY_FILES == set()
    assert "client_orchestrator.pem" in pem_files(d.state_dir)
    registered = {e.client_id for e in open_registry(d.settings).entries()}
    assert registered == {"client:orchestrator"}
    elsewhere = init_client_key(d.root / "argocd-host", "agent:argocd", "ES256").key
    with AuthClient(d.endpoints["auth"], "agent:argocd", elsewhere) as unregistered, \
            pytest.raises(errors.InvalidClient) as caught:
        unregistered.introspect("x")
    assert caught.value.reason == "unknown_client"


def test_embedded_serve_makes_every_key(tmp_path: Path) -> None:
    """A plain `infrabot serve` (the in-memory broker) still makes every key, for convenience."""
    state = tmp_path / "state"
    with Processes(logs=tmp_path, cwd=tmp_path) as procs:
        proc = procs.start("serve", [str(INFRABOT), "serve", "--port-base", "0"],
                           clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_LOG_LEVEL="WARNING"))
        deadline = time.monotonic() + 30
        while not (state / "endpoints.json").exists():
            assert proc.alive() and time.monotonic() < deadline, proc.output()
            time.sleep(0.05)
        assert AGENT_KEY_FILES | {"client_orchestrator.pem"} <= pem_files(state)
        registered = {e.client_id for e in StateDirRegistry(state / "keys").entries()}
        agents = {"agent:infrabot", "agent:argocd", "agent:scanner", "agent:rollback",
                  "agent:cleanup", "agent:notifier"}  # every agent the directory declares
        # each agent's DPoP key too, under dpop:<agent>: it authenticates nobody
        assert registered == {"client:orchestrator", *agents, *(f"dpop:{a}" for a in agents)}


def test_a_worker_loads_only_its_queues_key_and_refuses_a_misrouted_hop(
        distributed: Distributed) -> None:
    d = distributed
    d.serve()
    d.provision("agent:infrabot")  # on disk here, but not this worker's to load
    d.worker(["argocd"])
    run_id = accepted_run_id(d.webhook(deployment("sam")))  # infrabot's hop waits: no worker
    with d.runs() as runs:
        run = runs.get(run_id)
    assert run is not None
    app = create_celery(d.settings)
    try:  # InfraBot's hop, misrouted to ArgoCD's queue
        app.send_task("agents.infrabot", args=[run_id, run.workflow, "not-a-token", "",
                                               "delegated"],
                      queue="argocd", task_id=f"{run_id}.misrouted")
    finally:
        app.close()
    run = d.wait_run(run_id)
    assert run.status == "failed"
    assert run.reason == ("agent:infrabot: this worker holds no key for agent:infrabot (a task "
                          "misrouted to another agent's queue); it never signs with another "
                          "agent's key")
    with d.audit() as audit:  # it asked the authorization server for nothing
        assert [r for r in audit.query(run_id=run_id)
                if r.performed_by == "agent:infrabot"] == []


def test_an_agent_signing_as_another_is_refused_and_audited(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    d.provision("agent:cleanup", "agent:infrabot")
    cleanup_key = load_client_key(d.settings.keys_dir / "clients", "agent:cleanup")
    assert cleanup_key is not None
    with AuthClient(d.endpoints["auth"], "agent:infrabot", cleanup_key) as impostor, \
            pytest.raises(errors.InvalidClient) as caught:
        impostor.exchange("x", audience="agent:argocd")
    assert caught.value.reason == "unknown_key"
    with d.audit() as audit:
        refused = [r for r in audit.query() if r.reason == "unknown_key"]
    assert refused and refused[-1].decision == "deny" and refused[-1].status == 401


def test_rotating_a_key_with_runs_in_flight(distributed: Distributed, tmp_path: Path) -> None:
    """register the new key, move the worker to it (start one on the new key, stop the old one
    warm), revoke the old key: every run succeeds, and the old key is refused after."""
    d = distributed
    d.serve()
    d.worker(["infrabot"])
    d.worker(["scanner", "cleanup"])
    old_worker = d.worker(["argocd"])
    [old] = [e.kid for e in open_registry(d.settings).entries() if e.client_id == "agent:argocd"]
    old_key = load_client_key(d.settings.keys_dir / "clients", "agent:argocd")
    assert old_key is not None and old_key.kid == old

    runs = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(6)]
    rotated = keys_cli(d, "init", "agent:argocd", "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    jwks = tmp_path / "argocd-new.jwks"
    jwks.write_text(rotated.stdout)
    [new] = [k["kid"] for k in json.loads(rotated.stdout)["keys"]]
    assert new != old and f"then `infrabot keys revoke agent:argocd {old}`" in rotated.stderr
    registered = keys_cli(d, "register", "agent:argocd", "--jwks", str(jwks))
    assert registered.stdout == f"registered: agent:argocd {new} ES256\n", registered.stderr
    runs += [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(3)]
    d.wait_hop(runs[0], "agent:argocd")  # by the old worker: the only one on argocd's queue
    new_worker = d.worker(["argocd"], provision=False)
    d.stop(old_worker)  # warm: it finishes its hop; what it had not started goes back
    runs += [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(3)]
    revoked = keys_cli(d, "revoke", "agent:argocd", old)
    assert revoked.returncode == 0, revoked.stderr

    finished = [d.wait_run(run_id) for run_id in runs]
    assert [(r.status, r.reason) for r in finished] == [("succeeded", "ok")] * len(runs), \
        d.logs()
    assert argocd_tasks_done(old_worker) >= 1 and argocd_tasks_done(new_worker) >= 1, d.logs()
    with AuthClient(d.endpoints["auth"], "agent:argocd", old_key) as stale, \
            pytest.raises(errors.InvalidClient) as caught:
        stale.introspect("x")
    assert caught.value.reason == "unknown_key"
    listed = [e for e in json.loads(keys_cli(d, "list", "--json").stdout)
              if e["client_id"] == "agent:argocd"]
    assert [(e["kid"], "revoked" in e) for e in listed] == [(new, False), (old, True)]
