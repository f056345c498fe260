"""What the tools show of a delegation chain (issue 16): ``token inspect`` gives the verdict
and each record's status, judged with the state directory's keys; a run's log shows each chain
its tokens carried with each record's status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infrabot._delegation_view import run_chains
from infrabot.cli._inspect import inspect_token, render
from orchestrator.identity import DelegationRecord, delegator_signature
from orchestrator.runs import Exchanged, Run, RunEvent, shown_claims

from .conftest import CLEANUP, AuthServer, unverified_claims


def test_inspect_shows_a_confirmed_chain_record_by_record(
        server: AuthServer, capsys: pytest.CaptureFixture[str]) -> None:
    aws = server.chain()[-1]
    result = inspect_token(server.settings, aws)
    verdict = result["delegation_chain"]
    assert isinstance(verdict, dict)
    assert verdict["status"] == "confirmed"
    assert [(r["delegator"], r["delegatee"], r["status"]) for r in verdict["records"]] == [
        ("agent:argocd", "agent:cleanup", "verified"),
        ("agent:infrabot", "agent:argocd", "verified")]
    render(result)
    out = capsys.readouterr().out
    assert "delegation_chain: confirmed" in out
    assert "agent:infrabot -> agent:argocd" in out and ": verified" in out


def test_inspect_names_the_record_its_delegator_never_signed(server: AuthServer) -> None:
    claims = unverified_claims(server.chain()[-1])
    first = DelegationRecord.model_validate(claims["delegation_chain"][1])
    claims["delegation_chain"][1]["delegator_signature"] = delegator_signature(
        first, server.stack.clients[CLEANUP])
    verdict = inspect_token(server.settings, server.sign(claims))["delegation_chain"]
    assert isinstance(verdict, dict)
    assert (verdict["status"], verdict["reason"]) == ("invalid", "delegation_signature_invalid")
    assert [r["status"] for r in verdict["records"]] == ["verified", "delegator_key_unknown"]


def test_a_runs_log_shows_each_chain_once_with_each_records_status(server: AuthServer) -> None:
    _, h1, h2, aws = server.chain()
    now = datetime.now(UTC)
    events = tuple(
        RunEvent(run_id="run-tools-1", seq=i, time=now, agent=agent,
                 detail=Exchanged(for_=what, requested=None, granted=None, expires_in=60,
                                  claims=shown_claims(token), ms=1))
        for i, (agent, what, token) in enumerate([
            ("agent:infrabot", "hand-off", h1), ("agent:argocd", "hand-off", h2),
            ("agent:cleanup", "aws", aws)], start=1))
    run = Run.model_validate({**_run_fields(), "events": events})
    chains = run_chains(server.settings, run)
    assert [(c["agent"], len(c["records"])) for c in chains] == [
        ("agent:infrabot", 1), ("agent:argocd", 2)]  # the AWS token's chain is h2's
    assert {r["status"] for c in chains for r in c["records"]} == {"verified"}


def _run_fields() -> dict[str, object]:
    return {"run_id": "run-tools-1", "workflow": "post-deploy", "user": "user:sam",
            "status": "succeeded", "trigger": "ci_pipeline", "environment": "prod",
            "repository": "acme/service-x", "commit": "9f2c1e7", "service": "service-x",
            "created_at": datetime.now(UTC)}
