"""``infrabot worker`` refuses to start, in one line and exit status 1, when it could not take
part in serve's system: no run log of serve's (INFRABOT_DATABASE_URL unset and no runs.sqlite3
in its state directory: it would keep a run log of its own, and every hop would fail
``unknown_run``) or no endpoints.json (it would send hops to the default ports). Where those
are there, or INFRABOT_HOST says where serve listens, it starts: it gets as far as its broker,
here a port where nothing listens, and is stopped by its pid."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from _cli import INFRABOT, clean_env, infrabot, serving

from bench._procs import Processes
from orchestrator.runs import RunStore

NO_BROKER = "redis://127.0.0.1:1/0"  # a shared broker, never reached: the refusals come first
STARTED = "consumer: cannot connect to"  # Celery's line once the worker tries its broker
START_TIMEOUT = 60.0
REFUSAL_TIMEOUT = 30.0  # a refusal comes once the command has imported, in a few seconds


def worker_host(tmp_path: Path) -> Path:
    """A worker host's state directory as `infrabot keys init agent:argocd` leaves it."""
    state = tmp_path / "argocd-host"
    infrabot("keys", "init", "agent:argocd", "--state-dir", str(state), env=clean_env()).ok()
    return state


def worker(state: Path) -> list[str]:
    return ["worker", "-Q", "argocd", "--pool", "solo", "--state-dir", str(state)]


def refusal(state: Path, **settings: str) -> str:
    """The worker's one error line; it must exit 1 at once with nothing on stdout (a worker
    that starts instead is killed, by ``subprocess.run``, after REFUSAL_TIMEOUT)."""
    try:
        result = infrabot(*worker(state), env=clean_env(INFRABOT_BROKER_URL=NO_BROKER,
                                                        **settings), timeout=REFUSAL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"infrabot worker started instead of refusing (still running after "
                    f"{REFUSAL_TIMEOUT:g} s)")
    assert (result.returncode, result.stdout) == (1, ""), result
    return result.error_line()


def starts(state: Path, env: dict[str, str], logs: Path) -> None:
    """Start the worker; once it tries its broker (past every start-up check), stop it by its
    pid (SIGTERM, Celery's warm shutdown; SIGKILL if that hangs)."""
    with Processes(logs=logs, cwd=logs) as procs:
        proc = procs.start("worker", [str(INFRABOT), *worker(state)], env)
        deadline = time.monotonic() + START_TIMEOUT
        while STARTED not in proc.output():
            if not proc.alive() or time.monotonic() > deadline:
                pytest.fail(f"infrabot worker did not start:\n{proc.output()}")
            time.sleep(0.1)
        procs.stop(proc)


def test_a_worker_without_serves_run_log_refuses_and_makes_none(tmp_path: Path) -> None:
    state = worker_host(tmp_path)
    assert refusal(state) == (
        f"no run log {state / 'runs.sqlite3'}: set INFRABOT_DATABASE_URL to the database "
        "`infrabot serve` uses, or give this worker serve's state directory (a run log of the "
        "worker's own never sees serve's runs)")
    assert not (state / "runs.sqlite3").exists()


def test_a_worker_without_endpoints_json_refuses(tmp_path: Path) -> None:
    """With INFRABOT_DATABASE_URL the run log is serve's database, so only endpoints.json is
    missing; the worker's state directory still gets no run log."""
    state, shared = worker_host(tmp_path), tmp_path / "shared"
    assert refusal(state, INFRABOT_DATABASE_URL=f"sqlite:///{shared}") == (
        f"no {state / 'endpoints.json'}: copy it from serve's state directory (`infrabot "
        "serve` writes it once ready), or set INFRABOT_HOST (and the INFRABOT_*_PORT "
        "settings) to where serve listens")
    assert not (state / "runs.sqlite3").exists()


def test_a_worker_with_a_damaged_endpoints_json_refuses(tmp_path: Path) -> None:
    state = worker_host(tmp_path)
    RunStore(state / "runs.sqlite3").close()  # as serve leaves it
    (state / "endpoints.json").write_text(json.dumps({"datadog": "http://127.0.0.1:8701"}))
    assert refusal(state) == f"{state / 'endpoints.json'} does not name an auth server"


def test_infrabot_host_stands_in_for_endpoints_json(tmp_path: Path) -> None:
    """docs/deploy.md sets INFRABOT_HOST on every host: the worker reaches serve there on the
    configured ports, as it always did."""
    state = worker_host(tmp_path)
    RunStore(state / "runs.sqlite3").close()
    starts(state, clean_env(INFRABOT_BROKER_URL=NO_BROKER, INFRABOT_HOST="127.0.0.1"),
           tmp_path / "logs")
    assert not (state / "endpoints.json").exists()


def test_a_worker_in_serves_state_directory_starts(tmp_path: Path) -> None:
    """What serve leaves in its state directory (the run log, endpoints.json; the embedded
    serve also makes the agents' keys) is all a worker there needs: the e2e harness and the
    benchmarks start their workers so."""
    state = tmp_path / "state"
    state.mkdir()
    with serving(state, clean_env(INFRABOT_STATE_DIR=str(state))):
        assert {"runs.sqlite3", "endpoints.json"} <= {p.name for p in state.iterdir()}
        starts(state, clean_env(INFRABOT_BROKER_URL=NO_BROKER), tmp_path / "logs")


def test_a_worker_in_serves_state_directory_starts_while_serve_is_down(tmp_path: Path) -> None:
    """serve removes endpoints.json when it stops; a worker (re)started then in serve's own
    state directory (the systemd units' /var/lib/infrabot: it holds serve's signing key ring)
    starts, and finds serve again at its first hop, as before: no worker exits because serve
    restarted (docs/reliability.md)."""
    state = tmp_path / "state"
    state.mkdir()
    with serving(state, clean_env(INFRABOT_STATE_DIR=str(state))):
        pass  # serve has run here once, and stopped
    assert not (state / "endpoints.json").exists()
    assert (state / "keys" / "signing" / "keyring.json").exists()
    (state / "runs.sqlite3").unlink()  # nor need the run log be there yet: it is this one
    starts(state, clean_env(INFRABOT_BROKER_URL=NO_BROKER), tmp_path / "logs")
