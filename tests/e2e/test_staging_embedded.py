"""A CI-triggered staging deploy runs post-deploy end to end on staging's own resources (the
workflow's ``values: staging``), and leaves every prod resource as it was seeded."""

from __future__ import annotations

from pathlib import Path

from e2e._harness import (
    ARGOCD_CHAIN,
    CLEANUP_CHAIN,
    COMMIT,
    RUN_TIMEOUT,
    SAM,
    accepted_run_id,
    assert_post_deploy_audit,
    deployment,
    embedded_settings,
    events_of,
    post_webhook,
    service_records,
)
from infrabot.system import running_system

SERVICE_X = ("acme", "service-x")
STAGING_INSTANCE = "i-0b1c2d3e4f5a60001"
PROD_IDS = ("9001", "i-0a1b2c3d4e5f6", "P7X9K2Q", "PSVCX01", "1001")


def test_ci_staging_deploy_succeeds_on_staging_resources_only(tmp_path: Path) -> None:
    with running_system(embedded_settings(tmp_path / "state")) as system:
        delivery = deployment("sam", environment="staging")
        run_id = accepted_run_id(post_webhook(system.webhooks_url, delivery))
        run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)

        assert (run.status, run.reason, run.environment, run.workflow) == \
            ("succeeded", "ok", "staging", "post-deploy")
        assert events_of(run, "exchange_denied") == []
        records = system.stack.audit.query(run_id=run_id)
        assert_post_deploy_audit(records, run_id, environment="staging")
        named = [r.resource for r in service_records(records)]
        assert [r for r in named if any(p in r for p in PROD_IDS)] == [], named

        github = system.service_state("github")
        statuses = github.statuses[(*SERVICE_X, 9002)]
        assert [(s.state, s.environment, s.description) for s in statuses] == \
            [("success", "staging", f"Rolled out {COMMIT}")]
        assert github.attribution[f"status:{statuses[0].id}"] == (ARGOCD_CHAIN[0], SAM)
        assert list(github.statuses[(*SERVICE_X, 9001)]) == []
        aws = system.service_state("aws")
        assert aws.changes == [("CreateTags", STAGING_INSTANCE, "agent:argocd", SAM),
                               ("DeleteTags", STAGING_INSTANCE, "agent:cleanup", SAM)]
        assert aws.tags(STAGING_INSTANCE)["deployed-commit"] == COMMIT
        assert "deployed-commit" not in aws.tags("i-0a1b2c3d4e5f60001")
        assert aws.tags("i-0a1b2c3d4e5f60003")["deploy"] == "stale"
        pagerduty = system.service_state("pagerduty")
        assert pagerduty.history == [("PSTG4X1", "resolved", CLEANUP_CHAIN[0], SAM)]
        assert pagerduty.incidents["P7X9K2Q"].status == "triggered"
        assert system.stack.audit.verify().ok
