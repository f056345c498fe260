"""The declared-service example end to end: a deployment whose task is ``announce`` runs the
announce workflow, whose one step posts to #deploys in the chat service declared by
workflows/services/chat.openapi.yaml. Embedded (one process), then distributed (a real
``infrabot serve`` and ``infrabot worker`` over Redis): the service has its own origin and
audience, the exchange is narrowed to the document's scope and DPoP-bound, the call is audited,
and the message can be read back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from e2e._harness import (
    COMMIT,
    PR,
    RUN_TIMEOUT,
    SAM,
    SECRET,
    accepted_run_id,
    embedded_settings,
    events_of,
    post_webhook,
)
from e2e._processes import Distributed
from infrabot.stack import ORCHESTRATOR_CLIENT
from infrabot.system import running_system
from orchestrator.ci import build_deployment_event
from orchestrator.identity import Context
from orchestrator.runs import Called, Exchanged, Run

CHANNEL = "/channels/deploys/messages"


def announce() -> tuple[dict[str, str], bytes]:
    return build_deployment_event("sam", "service-x", "prod", COMMIT, pr=PR, task="announce",
                                  secret=SECRET.encode())


def assert_announced(run: Run, run_id: str, chat_url: str) -> None:
    assert (run.status, run.reason, run.workflow) == ("succeeded", "ok", "announce")
    [exchanged] = events_of(run, "exchanged")
    assert isinstance(exchanged, Exchanged) and exchanged.claims is not None
    assert exchanged.requested == exchanged.granted == "urn:infra:chat:write"
    assert exchanged.claims["aud"] == chat_url
    assert exchanged.claims.get("cnf") is not None, exchanged.claims  # DPoP-bound by default
    [called] = events_of(run, "called")
    assert isinstance(called, Called)
    assert (called.service, called.action, called.status) == ("chat", "message:post", 201)


def chat_records(records: list) -> list:
    return [r for r in records if r.service == "chat"]


def test_the_announce_step_posts_to_the_declared_chat_service_embedded(tmp_path: Path) -> None:
    with running_system(embedded_settings(tmp_path / "state")) as system:
        chat_url = system.endpoints()["chat"]
        assert chat_url not in {system.endpoints()[n] for n in ("datadog", "aws", "auth")}
        run_id = accepted_run_id(post_webhook(system.webhooks_url, announce()))
        run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)
        assert_announced(run, run_id, chat_url)

        [record] = chat_records(system.stack.audit.query(run_id=run_id))
        assert (record.action, record.resource, record.decision, record.on_behalf_of,
                record.performed_by, record.status) == (
            "message:post", "chat:channel:deploys", "allow", SAM, "agent:infrabot", 201)
        [message] = [s.data for s in system.service_state("chat").listing(CHANNEL)]
        assert message["text"] == f"sam deployed {COMMIT} of service-x to prod (run {run_id})."
        assert message["channel"] == "deploys" and message["user"] == "sam"
        served = httpx.get(chat_url + "/openapi.json").json()
        assert served["servers"] == [{"url": chat_url}]


def read_messages(d: Distributed) -> object:
    """GET #deploys' messages as InfraBot for sam, with a token exchanged for the chat
    service's read scope and bound to InfraBot's DPoP key, as an agent obtains it."""
    ctx = Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                  commit=COMMIT, run_id="run-readback")
    chat = d.endpoints["chat"]
    with d.auth_client(ORCHESTRATOR_CLIENT) as orchestrator, \
            d.auth_client("agent:infrabot") as infrabot, \
            httpx.Client(trust_env=False) as http:
        root = orchestrator.root_token(SAM, ["urn:infra:chat:read"], ctx, "agent:infrabot")
        token = infrabot.exchange(root["access_token"], resource=chat,
                                  scope="urn:infra:chat:read")["access_token"]
        assert infrabot.dpop is not None
        response = http.get(chat + CHANNEL, headers=infrabot.dpop.headers(
            "GET", chat + CHANNEL, token))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.redis
def test_the_announce_step_posts_to_the_declared_chat_service_distributed(
        distributed: Distributed) -> None:
    d = distributed
    endpoints = d.serve()
    assert "chat" in endpoints  # endpoints.json tells the workers where it is
    d.worker(queues=["infrabot"])
    run_id = accepted_run_id(d.webhook(announce()))
    run = d.wait_run(run_id)
    assert_announced(run, run_id, endpoints["chat"])
    with d.audit() as audit:
        [record] = chat_records(audit.query(run_id=run_id))
        assert (record.action, record.decision, record.performed_by) == (
            "message:post", "allow", "agent:infrabot")
    listed = read_messages(d)
    assert isinstance(listed, dict)
    [message] = listed["messages"]
    assert run_id in message["text"] and message["channel"] == "deploys"
