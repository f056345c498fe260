"""A broker or an authorization server that cannot be reached when a run starts: the run ends
`failed` with the reason (never left pending), and the orchestrator answers Unavailable so the
sender may redeliver."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from celery import Celery

from agents.tasks import dispatcher
from infrabot.celery_app import create_celery
from orchestrator.ci import CIEvent
from orchestrator.client import AuthClient
from orchestrator.config import Settings
from orchestrator.errors import Unavailable
from orchestrator.identity import generate_private_key, signing_key_of
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import RunStore
from orchestrator.workflows import load_directory, load_workflows


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_an_unreachable_broker_fails_the_run(tmp_path: Path, scheme: str) -> None:
    url = {"redis": f"redis://127.0.0.1:{_closed_port()}/0",
           "amqp": f"amqp://guest:guest@127.0.0.1:{_closed_port()}/ib"}[scheme]
    settings = Settings(state_dir=tmp_path, broker_url=url)
    app: Celery = create_celery(settings)
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         "max_retries": 0}
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    event = CIEvent(delivery_id="d-broker-down-1", event_type="deployment", user="user:sam",
                    sender_login="sam", repository="acme/service-x", service="service-x",
                    environment="prod", commit="9f2c1e7", trigger="ci_pipeline", pr=124)
    with RunStore(tmp_path / "runs.sqlite3") as runs, _NoAuth() as auth:
        orch = Orchestrator(directory, load_workflows(settings.workflows_dir, directory), runs,
                            auth, dispatcher(app), static_token="a-static-service-token")
        with pytest.raises(Unavailable) as caught:
            orch.start(event, mode="static", run_id="run-broker-down")
        assert caught.value.reason == "broker_unavailable"
        run = runs.get("run-broker-down")
    app.close()
    assert run is not None
    assert run.status == "failed"
    assert run.reason is not None and run.reason.startswith("broker unavailable")


class _NoAuth(AuthClient):
    """Static mode never asks the authorization server; any call would be a test failure."""

    def __init__(self) -> None:  # nothing to set up: no HTTP client is ever needed
        pass

    def close(self) -> None:
        pass

    def root_token(self, *args: object, **kwargs: object) -> dict[str, object]:
        raise AssertionError("static mode must not request a root token")


def test_an_unreachable_authorization_server_fails_the_run_and_says_so(tmp_path: Path) -> None:
    """The root grant cannot be had: the run is failed and the caller told (a webhook answers
    503, releasing the delivery), never handed a run id as if it had started."""
    settings = Settings(state_dir=tmp_path)
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    event = CIEvent(delivery_id="d-auth-down-1", event_type="deployment", user="user:sam",
                    sender_login="sam", repository="acme/service-x", service="service-x",
                    environment="prod", commit="9f2c1e7", trigger="ci_pipeline", pr=124)
    auth = AuthClient(f"http://127.0.0.1:{_closed_port()}", "client:orchestrator",
                      signing_key_of(generate_private_key("ES256"), "ES256"), timeout=1.0)
    dispatched: list[str] = []
    with RunStore(tmp_path / "runs.sqlite3") as runs:
        orch = Orchestrator(directory, load_workflows(settings.workflows_dir, directory), runs,
                            auth, lambda *args: dispatched.append(args[0]))
        with pytest.raises(Unavailable) as caught:
            orch.start(event, run_id="run-auth-down")
        run = runs.get("run-auth-down")
    assert caught.value.reason == "authserver_unavailable"
    assert run is not None and (run.status, run.reason) == (
        "failed", "root grant: authserver_unavailable")
    assert dispatched == []
