"""The whole chain in one process: a signed CI webhook over HTTP → InfraBot → ArgoCD and the
scanner in parallel → CleanupAgent, every hop a token exchange, every call enforced and audited, effects once."""

from __future__ import annotations

from pathlib import Path

from e2e._harness import (
    ARGOCD_CHAIN,
    CLEANUP_CHAIN,
    COMMIT,
    INFRABOT_CHAIN,
    POST_DEPLOY_HAND_OFFS,
    PR,
    RUN_TIMEOUT,
    SAM,
    accepted_run_id,
    assert_post_deploy_audit,
    assert_post_deploy_hops,
    assert_runs_show_hop_by_hop,
    deployment,
    embedded_settings,
    events_of,
    post_webhook,
)
from infrabot.system import running_system

SERVICE_X = ("acme", "service-x")


def test_ci_event_runs_the_whole_chain_once_embedded(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with running_system(embedded_settings(state_dir)) as system:
        run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
        run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)

        assert (run.status, run.reason, run.user, run.workflow) == \
            ("succeeded", "ok", SAM, "post-deploy")
        assert_post_deploy_hops(run)
        assert events_of(run, "retrying") == [] and events_of(run, "exchange_denied") == []
        assert [d.to for d in events_of(run, "handed_off")] == POST_DEPLOY_HAND_OFFS
        assert_post_deploy_audit(system.stack.audit.query(run_id=run_id), run_id)
        webhook = system.stack.audit.query(service="webhooks")
        assert [(r.decision, r.reason, r.run_id, r.on_behalf_of) for r in webhook] == \
            [("allow", "accepted", run_id, SAM)]

        # What the services saw happen: each effect exactly once, by the agent, for sam.
        github = system.service_state("github")
        comments = github.comments[(*SERVICE_X, PR)]
        assert len(comments) == 1 and run_id in comments[0].body
        assert comments[0].user.login == "infrabot[bot]"
        assert github.attribution[f"comment:{comments[0].id}"] == (INFRABOT_CHAIN[0], SAM)
        statuses = github.statuses[(*SERVICE_X, 9001)]
        assert [(s.state, s.description) for s in statuses] == \
            [("success", f"Rolled out {COMMIT}")]
        assert github.attribution[f"status:{statuses[0].id}"] == (ARGOCD_CHAIN[0], SAM)
        aws = system.service_state("aws")
        assert aws.changes == [("CreateTags", "i-0a1b2c3d4e5f60001", "agent:argocd", SAM),
                               ("CreateTags", "i-0a1b2c3d4e5f60002", "agent:argocd", SAM),
                               ("DeleteTags", "i-0a1b2c3d4e5f60003", "agent:cleanup", SAM)]
        assert aws.tags("i-0a1b2c3d4e5f60001")["deployed-commit"] == COMMIT
        assert "deploy" not in aws.tags("i-0a1b2c3d4e5f60003")
        pagerduty = system.service_state("pagerduty")
        assert pagerduty.history == [("P7X9K2Q", "resolved", CLEANUP_CHAIN[0], SAM)]
        assert pagerduty.incidents["P7X9K2Q"].status == "resolved"
        assert system.stack.audit.verify().ok

    assert_runs_show_hop_by_hop(state_dir, run)
