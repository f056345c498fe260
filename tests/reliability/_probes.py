"""Checks a test makes by hand against a running system: valid tokens for every service (read
scopes, InfraBot acting for sam in a probe run of their own), one read call per service, and
the authorization server's endpoints, each answer kept for the test to judge.

Tokens are DPoP-bound (binding is on): the agents' clients made here sign proofs with the
agent's DPoP key in the system's state directory, and :func:`read` presents a bound token as
its holder does, with a fresh proof by the key it is bound to (:data:`HOLDERS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from infrabot.stack import ORCHESTRATOR_CLIENT
from infrabot.system import System
from orchestrator._dpop_signer import DPoPSigner, dpop_key
from orchestrator.catalog import build_request
from orchestrator.client import AuthClient, json_object
from orchestrator.config import SERVICE_NAMES
from orchestrator.identity import CLIENT_ASSERTION_TYPE, Context, unverified_payload

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
# The DPoP signers of the agents' clients made here, by key thumbprint: who holds a bound token.
HOLDERS: dict[str, DPoPSigner] = {}
_SIGNERS: dict[tuple[str, str], DPoPSigner] = {}


def holding(client: AuthClient) -> AuthClient:
    """``client``, its DPoP signer (if any) remembered as the holder of the tokens bound to it."""
    if client.dpop is not None:
        HOLDERS[client.dpop.jkt] = client.dpop
    return client


def presented(method: str, url: str, token: str) -> dict[str, str]:
    """The ``Authorization`` (and ``DPoP``) headers ``token``'s holder sends: a bound token
    with a proof by its key, any other as a bearer token."""
    cnf = (unverified_payload(token, max_bytes=65536) or {}).get("cnf")
    holder = HOLDERS.get(cnf.get("jkt")) if isinstance(cnf, dict) else None
    return holder.headers(method, url, token) if holder else {"Authorization": f"Bearer {token}"}


def proof_headers(client: AuthClient, http: httpx.Client, url: str) -> dict[str, str]:
    """A ``DPoP`` header for one POST to the token endpoint ``url`` by ``client``'s key, with
    the server's current nonce (any answer of the endpoint carries it)."""
    assert client.dpop is not None
    client.dpop.learn(url, http.post(url, data={"grant_type": "nonce"}).headers)
    return {"DPoP": client.dpop.proof("POST", url)}


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
    with holding(clients("agent:infrabot")) as infrabot:
        return {name: infrabot.exchange(root, resource=endpoints[name],
                                        scope=READS[name][2])["access_token"]
                for name in SERVICE_NAMES}


def read(http: httpx.Client, endpoints: Mapping[str, str], service: str,
         token: str | None) -> httpx.Response:
    """The service's read call with ``token`` (none if None), as its holder presents it."""
    action, params, _ = READS[service]
    method, path, query, body = build_request(action, params)
    url = endpoints[service] + path
    headers = presented(method, url, token) if token is not None else {}
    return http.request(method, url, params=query, json=body, headers=headers)


def system_clients(system: System, http: httpx.Client | None = None) -> Clients:
    """Clients of an in-process system's authorization server, each with its own key (over
    ``http`` if given, else each its own connection pool)."""
    def client(client_id: str) -> AuthClient:
        dpop = None
        if client_id.startswith("agent:"):  # one signer per agent: it keeps the server's nonce
            where = (str(system.settings.keys_dir), client_id)
            dpop = _SIGNERS.get(where)
            if dpop is None:
                dpop = _SIGNERS[where] = DPoPSigner(dpop_key(system.settings.keys_dir,
                                                             client_id))
        return holding(AuthClient(system.settings.auth_url, client_id,
                                  system.stack.clients[client_id], http=http, dpop=dpop))
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
