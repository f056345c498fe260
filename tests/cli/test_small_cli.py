"""Small things a newcomer reads: every option of the commands they start with has help text,
counted nouns agree ("1 record from 1 writer"), and ``token assertion`` in distributed mode
never makes an agent key (only ``infrabot keys init`` does)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _cli import clean_env, infrabot

from orchestrator.audit import AuditRecord, AuditStore

HELPED = [("worker",), ("simulate", "deploy"), ("simulate", "scenario"), ("simulate", "load"),
          ("token", "assertion")]


@pytest.mark.parametrize("command", HELPED, ids=" ".join)
def test_every_option_has_help_text(command: tuple[str, ...]) -> None:
    text = infrabot(*command, "--help", env=clean_env()).ok().stdout
    options = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    entries = re.split(r"\n(?=  -)", options)
    bare = [e.split()[0] for e in entries if len(re.split(r"\s{2,}", e.strip(), 1)) < 2]
    assert not bare, f"options without help in {' '.join(command)}: {bare}"


def test_audit_verify_counts_one_record_in_the_singular(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with AuditStore(state / "audit.sqlite3", writer="svc") as store:
        store.append(AuditRecord(time=datetime(2025, 7, 18, tzinfo=UTC), service="datadog",
                                 action="metrics:query", resource="dashboard", decision="allow",
                                 reason="ok", performed_by="agent:infrabot",
                                 on_behalf_of="user:sam"))
    result = infrabot("audit", "verify", "--state-dir", str(state), env=clean_env())
    assert result.returncode == 3, result
    assert result.stdout.splitlines()[-1] == (
        "audit trail intact, but 1 record is unanchored (after their writer's last checkpoint, "
        "nothing signed vouches for them): 1 record from 1 writer, 0 checkpoints")


def test_token_assertion_in_distributed_mode_makes_no_agent_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state),
                    INFRABOT_BROKER_URL="redis://127.0.0.1:6379/10")
    result = infrabot("token", "assertion", "agent:argocd", env=env)
    where = state / "keys" / "clients"
    assert result.error_line() == (
        f"no key for agent:argocd in {where}: create it with `infrabot keys init agent:argocd "
        f"--state-dir {state}` and register its public key (`infrabot keys register`)")
    assert not (where / "agent_argocd.pem").exists()


def test_token_assertion_embedded_still_signs(tmp_path: Path) -> None:
    env = clean_env(INFRABOT_STATE_DIR=str(tmp_path / "state"))
    token = infrabot("token", "assertion", "agent:argocd", "--ttl", "30", env=env).ok()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token.stdout.strip())
