"""Fail closed: with the revocation registry unreachable (the test's own ``redis-server``,
stopped by its pid), every check that needs it is refused with a clear reason, never allowed:

* the authorization server: 503 ``temporarily_unavailable`` / ``revocation_unavailable`` for an
  exchange, a root grant, introspection, revocation (RFC 7009 and by run), a ``log_url`` read
  and its health check;
* every service: 503 ``revocation_unavailable`` (with ``Retry-After``) for a valid token, on a
  read and on a write, which changes nothing;
* the webhook receiver: 503 ``replay_cache_unavailable``, no run started;
* the audit trail records those refusals and no allow while the registry is down.

Then Redis comes back (empty, as it kept nothing on disk) and new work is allowed again; a
revocation made before the restart must not be forgotten by it, and neither an assertion used
before it (a client's or the orchestrator's grant) nor a CI delivery received before it may be
taken as a first use after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from e2e._harness import accepted_run_id, deployment, embedded_settings, post_webhook

from infrabot.stack import ORCHESTRATOR_CLIENT
from infrabot.system import System, running_system
from orchestrator.config import SERVICE_NAMES
from orchestrator.errors import Unavailable
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    MEMORY_BEGAN_TOLERANCE_SECONDS,
    make_assertion,
)
from reliability._probes import (
    READS,
    error_of,
    exchange_form,
    presented,
    probe_context,
    proof_headers,
    read,
    read_tokens,
    root_for_infrabot,
    system_clients,
)
from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis
UNAVAILABLE = (503, "temporarily_unavailable", "revocation_unavailable")
COMMENTS = "/repos/acme/service-x/issues/124/comments"


@pytest.fixture
def system(tmp_path: Path, own_redis: RedisServer) -> Iterator[System]:
    settings = embedded_settings(tmp_path / "state", redis_url=own_redis.url(0))
    with running_system(settings, embedded_worker=False) as running:
        yield running


def comment_token(system: System) -> str:
    clients = system_clients(system)
    root = root_for_infrabot(clients, "run-probe", ["urn:infra:deploy:comment"])["access_token"]
    with clients("agent:infrabot") as infrabot:
        return str(infrabot.exchange(root, resource=system.endpoints()["github"],
                                     scope="urn:infra:deploy:comment")["access_token"])


def post_comment(http: httpx.Client, system: System, token: str) -> httpx.Response:
    url = system.endpoints()["github"] + COMMENTS
    return http.post(url, json={"body": "fail-closed probe"},
                     headers={**presented("POST", url, token),
                              "Idempotency-Key": "fail-closed-probe-1"})


def comments(system: System) -> int:
    state = system.service_state("github")
    return sum(len(v) for v in state.comments.values())


def test_registry_unreachable_refuses_everywhere(system: System,
                                                 own_redis: RedisServer) -> None:
    endpoints, auth = system.endpoints(), system.settings.auth_url
    clients = system_clients(system)
    tokens = read_tokens(clients, endpoints)
    writer = comment_token(system)
    root = root_for_infrabot(clients, "run-probe-root")["access_token"]
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        assert all(read(http, endpoints, s, tokens[s]).status_code == 200 for s in SERVICE_NAMES)
        before = comments(system)

        own_redis.stop()
        down = datetime.now(UTC)
        for service in SERVICE_NAMES:
            answer = read(http, endpoints, service, tokens[service])
            assert error_of(answer) == UNAVAILABLE, (service, answer.text)
            assert answer.headers["Retry-After"] == "1"
        assert error_of(post_comment(http, system, writer)) == UNAVAILABLE
        assert comments(system) == before

        with clients("agent:infrabot") as infrabot:
            for path, extra in (
                    ("/token", {"resource": endpoints["aws"]}),
                    ("/introspect", {"token": root}),
                    ("/revoke", {"token": root}),
            ):
                form = exchange_form(infrabot, root, **extra)
                if path != "/token":
                    form = {k: v for k, v in form.items() if k.startswith("client_")} | extra
                assert error_of(http.post(auth + path, data=form)) == UNAVAILABLE, path
        with clients("client:orchestrator") as orchestrator:
            with pytest.raises(Unavailable) as refused:
                orchestrator.root_token("user:sam", [READS["aws"][2]], probe_context(),
                                        "agent:infrabot")
            assert refused.value.reason == "revocation_unavailable"
            with pytest.raises(Unavailable) as refused:
                orchestrator.revoke_by(run_id="run-probe")
            assert refused.value.reason == "revocation_unavailable"
        answer = http.get(auth + "/audit", params={"jti": "any-jti-0001"},
                          headers=presented("GET", auth + "/audit", tokens["aws"]))
        assert error_of(answer) == UNAVAILABLE, answer.text
        health = http.get(auth + "/health")
        assert (health.status_code, health.json()) == \
            (503, {"status": "degraded", "reason": "revocation_unavailable"})

        webhook = post_webhook(system.webhooks_url, deployment("sam"))
        assert (webhook.status_code, webhook.json()["reason"]) == \
            (503, "replay_cache_unavailable")
        assert system.runtime.runs.list() == []
        up = datetime.now(UTC)

        records = system.stack.audit.query(since=down, until=up)
        assert [r for r in records if r.decision == "allow"] == []
        assert sorted((r.service, r.reason, r.status) for r in records
                      if r.service in SERVICE_NAMES) == sorted(
            [(s, "revocation_unavailable", 503) for s in SERVICE_NAMES]
            + [("github", "revocation_unavailable", 503)])
        assert ("webhooks", "replay_cache_unavailable", 503) in \
            {(r.service, r.reason, r.status) for r in records}

        own_redis.start()  # back, and empty: new work is allowed again
        fresh = read_tokens(clients, endpoints, "run-after")
        assert all(read(http, endpoints, s, fresh[s]).status_code == 200 for s in SERVICE_NAMES)
        assert post_webhook(system.webhooks_url, deployment("sam")).status_code == 202


def test_a_revocation_survives_a_registry_restart(system: System,
                                                  own_redis: RedisServer) -> None:
    """Redis kept nothing on disk: after its restart the registry cannot tell which tokens were
    revoked, so it must refuse every token issued before it restarted rather than forget."""
    endpoints = system.endpoints()
    clients = system_clients(system)
    tokens = read_tokens(clients, endpoints, "run-revoked")
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        with clients("client:orchestrator") as orchestrator:
            orchestrator.revoke_by(run_id="run-revoked")
        assert error_of(read(http, endpoints, "aws", tokens["aws"]))[2] == "run_revoked"
        own_redis.restart()
        for service in SERVICE_NAMES:  # revoked or not, nothing issued before is answered for
            answer = read(http, endpoints, service, tokens[service])
            assert answer.status_code == 401, answer.text
            assert error_of(answer) == (401, "invalid_token", "registry_reset")
        with clients("client:orchestrator") as orchestrator:
            assert orchestrator.introspect(tokens["aws"]) == {"active": False}
        fresh = read_tokens(clients, endpoints, "run-after-restart")  # issued since: answered
        for service in SERVICE_NAMES:
            assert read(http, endpoints, service, fresh[service]).status_code == 200


def test_assertions_used_before_a_registry_restart_are_not_accepted_after_it(
        system: System, own_redis: RedisServer) -> None:
    """The registry's one-time keys go with its memory: an agent's client assertion and the
    orchestrator's grant, each used once before the restart, are refused after it, as issued
    before the registry's memory began; new ones are accepted."""
    endpoints = system.endpoints()
    clients = system_clients(system)
    token_url = f"{endpoints['auth']}/token"
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
             "scope": "urn:infra:monitoring:read", "audience": "agent:infrabot",
             "assertion": make_assertion(
                 system.stack.clients[ORCHESTRATOR_CLIENT], issuer=ORCHESTRATOR_CLIENT,
                 subject="user:sam", audience=token_url, now=int(time.time()),
                 extra={"ctx": probe_context("run-grant").model_dump()})}
    with clients("agent:infrabot") as infrabot, clients(ORCHESTRATOR_CLIENT) as orchestrator, \
            httpx.Client(timeout=10.0, trust_env=False) as http:
        def grant_form() -> dict[str, str]:
            return {**grant, "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_id": ORCHESTRATOR_CLIENT,
                    "client_assertion": orchestrator.assertion()}

        root = str(http.post(token_url, data=grant_form()).json()["access_token"])
        datadog = {"resource": endpoints["datadog"], "scope": "urn:infra:monitoring:read"}
        form = exchange_form(infrabot, root, **datadog)
        # each post proves InfraBot's DPoP key afresh: only the assertion is used twice
        assert http.post(token_url, data=form,
                         headers=proof_headers(infrabot, http, token_url)).status_code == 200
        assert error_of(http.post(token_url, data=form,
                                  headers=proof_headers(infrabot, http, token_url))) == (
            401, "invalid_client", "assertion_replayed")
        assert error_of(http.post(token_url, data=grant_form())) == (
            400, "invalid_grant", "assertion_replayed")
        time.sleep(MEMORY_BEGAN_TOLERANCE_SECONDS + 1.1)  # both issued well before the restart
        own_redis.restart()

        fresh_root = root_for_infrabot(clients, "run-after")["access_token"]
        replayed = {**form, "subject_token": fresh_root}  # only the assertion is old
        assert error_of(http.post(token_url, data=replayed,
                                  headers=proof_headers(infrabot, http, token_url))) == (
            401, "invalid_client", "assertion_predates_registry")
        assert error_of(http.post(token_url, data=grant_form())) == (
            400, "invalid_grant", "assertion_predates_registry")
        renewed = exchange_form(infrabot, fresh_root, **datadog)
        assert http.post(token_url, data=renewed,
                         headers=proof_headers(infrabot, http, token_url)).status_code == 200


def test_a_delivery_received_before_a_registry_restart_is_refused_after_it(
        system: System, own_redis: RedisServer) -> None:
    """Redis's replay cache forgets the delivery; the run log on disk does not."""
    delivery = deployment("sam")
    run_id = accepted_run_id(post_webhook(system.webhooks_url, delivery))
    own_redis.restart()
    replayed = post_webhook(system.webhooks_url, delivery)
    assert (replayed.status_code, replayed.json()["reason"]) == (409, "replayed_delivery")
    assert [r.run_id for r in system.runtime.runs.list()] == [run_id]  # nothing started twice
    records = system.stack.audit.query(service="webhooks")
    assert [(r.decision, r.reason, r.status) for r in records] == [
        ("allow", "accepted", 202), ("deny", "replayed_delivery", 409)]
    accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))  # a new one is taken

