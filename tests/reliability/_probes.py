"""Checks a test makes by hand against a running system: valid tokens for every service (read
scopes, InfraBot acting for sam in a probe run of their own), one read call per service, and
the authorization server's endpoints, each answer kept for the test to judge."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from infrabot.stack import ORCHESTRATOR_CLIENT
from infrabot.system import System
from orchestrator.catalog import build_request
from orchestrator.client import AuthClient, json_object
from orchestrator.config import SERVICE_NAMES
from orchestrator.identity import CLIENT_ASSERTION_TYPE, Context

SAM = "user:sam"
# service -> (catalogue action, params, scope): a read the post-deploy story's data answers
READS: dict[str, tuple[str, dict[str, Any], str]] = {
    "datadog": ("datadog.metrics.query", {"from": 1764400000, "to": 1764400900,
                                          "query": "avg:trace.http.request.duration"
                                                   "{service:service-x,env:prod}"},
                "urn:infra:monitoring:read"),
    "github": ("github.pull.read", {"owner": "acme", "repo": "service-x", "pull_number": 124},
               "urn:infra:repo:read"),
    "aws": ("aws.ec2.describe_instances", {}, "urn:infra:infrastructure:read"),
    "pagerduty": ("pagerduty.incident.read", {"id": "P7X9K2Q"}, "urn:infra:incident:read"),
}
Clients = Callable[[str], AuthClient]


def probe_context(run_id: str = "run-probe") -> Context:
    return Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                   commit="9f2c1e7", run_id=run_id)


def root_for_infrabot(clients: Clients, run_id: str = "run-probe",
                      scopes: list[str] | None = None) -> dict[str, Any]:
    """A root token of sam's that InfraBot may exchange (every read scope by default)."""
    wanted = scopes or [scope for _, _, scope in READS.values()]
    with clients(ORCHESTRATOR_CLIENT) as orchestrator:
        return orchestrator.root_token(SAM, wanted, probe_context(run_id), "agent:infrabot")


def read_tokens(clients: Clients, endpoints: Mapping[str, str],
                run_id: str = "run-probe") -> dict[str, str]:
    """Per service, a token InfraBot obtained for that service's read scope."""
    root = root_for_infrabot(clients, run_id)["access_token"]
    with clients("agent:infrabot") as infrabot:
        return {name: infrabot.exchange(root, resource=endpoints[name],
                                        scope=READS[name][2])["access_token"]
                for name in SERVICE_NAMES}


def read(http: httpx.Client, endpoints: Mapping[str, str], service: str,
         token: str | None) -> httpx.Response:
    """The service's read call, with ``token`` as the bearer (none if None)."""
    action, params, _ = READS[service]
    method, path, query, body = build_request(action, params)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return http.request(method, endpoints[service] + path, params=query, json=body,
                        headers=headers)


def system_clients(system: System, http: httpx.Client | None = None) -> Clients:
    """Clients of an in-process system's authorization server, each with its own key (over
    ``http`` if given, else each its own connection pool)."""
    def client(client_id: str) -> AuthClient:
        return AuthClient(system.settings.auth_url, client_id, system.stack.clients[client_id],
                          http=http)
    return client


def exchange_form(client: AuthClient, subject_token: str, **target: str) -> dict[str, str]:
    """The form an agent posts to /token to exchange ``subject_token`` (fresh assertion)."""
    return {"client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client.assertion(), "client_id": client.client_id,
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject_token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token", **target}


def error_of(response: httpx.Response) -> tuple[int, str | None, str | None]:
    """``(status, error, reason)`` of an answer (body fields None when not JSON)."""
    body = json_object(response)
    return response.status_code, body.get("error"), body.get("reason")
