"""The whole chain distributed: a real ``infrabot serve`` (authorization server, four services,
webhook receiver) and real ``infrabot worker`` processes over a real Redis broker and
revocation registry. Effects are counted from the serve process's audit trail and read back
from the services with tokens obtained the way an agent obtains them."""

from __future__ import annotations

import httpx
import pytest

from e2e._harness import (
    COMMIT,
    POST_DEPLOY_MUTATIONS,
    PR,
    SAM,
    accepted_run_id,
    assert_post_deploy_audit,
    assert_post_deploy_hops,
    assert_runs_show_hop_by_hop,
    deployment,
    events_of,
    first_time_counts,
)
from e2e._processes import Distributed
from infrabot.stack import ORCHESTRATOR_CLIENT
from orchestrator.identity import Context

pytestmark = pytest.mark.redis


def read_back(d: Distributed, path: str, scope: str) -> object:
    """GET ``path`` at GitHub as InfraBot for sam, with a token exchanged for exactly
    ``scope`` (a read-back run of its own, so it never mixes with the run under test)."""
    ctx = Context(trigger="ci_pipeline", environment="prod", repository="acme/service-x",
                  commit=COMMIT, run_id="run-readback")
    with d.auth_client(ORCHESTRATOR_CLIENT) as orchestrator, \
            d.auth_client("agent:infrabot") as infrabot, \
            httpx.Client(base_url=d.endpoints["github"], trust_env=False) as http:
        root = orchestrator.root_token(SAM, [scope], ctx, "agent:infrabot")
        token = infrabot.exchange(root["access_token"], resource=d.endpoints["github"],
                                  scope=scope)["access_token"]
        assert infrabot.dpop is not None  # the token is bound to InfraBot's DPoP key
        response = http.get(path, headers=infrabot.dpop.headers(
            "GET", d.endpoints["github"] + path, token))
    assert response.status_code == 200, response.text
    return response.json()


def test_ci_event_runs_the_whole_chain_once_distributed(distributed: Distributed) -> None:
    d = distributed
    d.serve()
    d.worker(concurrency=2)

    run_id = accepted_run_id(d.webhook(deployment("sam")))
    run = d.wait_run(run_id)

    assert (run.status, run.reason, run.user, run.workflow) == \
        ("succeeded", "ok", SAM, "post-deploy"), d.logs()
    assert_post_deploy_hops(run)
    assert events_of(run, "retrying") == []
    with d.audit() as audit:
        records = audit.query(run_id=run_id)
        assert_post_deploy_audit(records, run_id)
        # Exactly once, counted across the whole trail (any run): one allowed, acting call per
        # mutating action, and no replays, since nothing was redelivered.
        everything = audit.query()
        assert {a: first_time_counts(everything)[a] for a in POST_DEPLOY_MUTATIONS} == \
            dict.fromkeys(POST_DEPLOY_MUTATIONS, 1)
        assert [r for r in everything if r.reason == "idempotent_replay"] == []
        assert audit.verify().ok

    comments = read_back(d, f"/repos/acme/service-x/issues/{PR}/comments",
                         "urn:infra:repo:read")
    assert isinstance(comments, list) and len(comments) == 1
    assert run_id in comments[0]["body"] and comments[0]["user"]["login"] == "infrabot[bot]"
    statuses = read_back(d, "/repos/acme/service-x/deployments/9001/statuses",
                         "urn:infra:repo:read")
    assert isinstance(statuses, list)
    assert [(s["state"], s["creator"]["login"]) for s in statuses] == \
        [("success", "argocd[bot]")]

    assert_runs_show_hop_by_hop(d.state_dir, run)
    d.assert_logs_hold_no_token()
