"""Checkpoints in the running system (embedded, no Redis): a run that ends is anchored, the
audit public keys are served at /audit/keys (never a private member), and a clean shutdown
anchors everything, so ``audit verify`` then exits 0."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx
from click.testing import CliRunner
from e2e._harness import accepted_run_id, deployment, embedded_settings, post_webhook

from infrabot.cli._audit import audit
from infrabot.system import running_system
from orchestrator.audit import (
    AnchorPolicy,
    AuditStore,
    check_trail,
    public_document,
    trusted_keys,
)
from orchestrator.audit._keys import PUBLIC_FILE
from orchestrator.identity import PublicKey


def _anchored_seq(store: AuditStore, keys: dict[str, PublicKey]) -> int:
    trail = check_trail(store.snapshot(), keys, AnchorPolicy(1000, 3600))
    assert trail.ok, trail.problems
    (writer,) = [w for w in trail.writers if w.writer == store.writer]
    return writer.anchored_seq


def test_run_end_keys_endpoint_and_shutdown(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # a period far longer than the test: only the run's end and the shutdown may anchor
    settings = embedded_settings(state, audit_checkpoint_seconds=3600)
    with running_system(settings) as system:
        keys_file = settings.audit_keys_dir / PUBLIC_FILE
        keys = trusted_keys(keys_file)
        run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
        run = system.runtime.runs.wait(run_id, timeout=30)
        assert run.status == "succeeded", run.reason
        last = max(r.seq for r in system.stack.audit.query(run_id=run_id))
        deadline = time.monotonic() + 5  # the hook signs just after the run's end commits
        while _anchored_seq(system.stack.audit, keys) < last and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _anchored_seq(system.stack.audit, keys) >= last
        with httpx.Client(trust_env=False) as http:
            served = http.get(f"{system.settings.auth_url}/audit/keys")
            tokens = http.get(f"{system.settings.auth_url}/jwks.json").json()
        assert served.status_code == 200
        assert served.json() == public_document(keys_file)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set().union(*served.json()["keys"])
        assert not set(keys) & {k["kid"] for k in tokens["keys"]}  # never a token key
    result = CliRunner().invoke(audit, ["verify", "--state-dir", str(state)])
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[-1].startswith("audit trail intact and anchored: ")


def test_unauthenticated_control_characters_never_reach_the_terminal_raw(tmp_path: Path
                                                                         ) -> None:
    """What the review saw: C1 controls and bidi overrides in an unauthenticated request's
    path, stored by the service, printed by `audit query` (table and JSON) and exported."""
    state = tmp_path / "state"
    hostile = "i-0a1b\u202egnp.exe\u2066\x85\x9b31m"
    with running_system(embedded_settings(state)) as system, \
            httpx.Client(trust_env=False) as http:
        response = http.get(f"{system.settings.service_url('aws')}/{quote(hostile)}")
        assert response.status_code in (401, 404)
        stored = [r.resource for r in system.stack.audit.query()]
        assert any("\u202e" in resource for resource in stored), stored
    for args in (["query"], ["query", "--json"], ["export"], ["export", "--format", "ocsf"]):
        result = CliRunner().invoke(audit, [*args, "--state-dir", str(state)])
        assert result.exit_code == 0, result.output
        assert [c for c in result.stdout if c != "\n" and not c.isprintable()] == [], args
        assert "\\u202e" in result.stdout, args
