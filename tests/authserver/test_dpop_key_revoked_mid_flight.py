"""An agent's DPoP key revoked (``infrabot keys revoke dpop:AGENT KID``) while its worker runs.

At the token endpoint a proof by the revoked key is refused as what the server then sees: the
agent has no key registered (``dpop_key_not_registered``), or not that one
(``dpop_key_mismatch``). The hop registers the agent's key again, which the server refuses as
revoked (``dpop_key_revoked``), so the key is replaced and the new one registered; that one
request is asked once more with a proof by the new key, and the run goes on. A token bound to
the revoked key is never usable again: the command has the system's registry refuse it
(``bound_key_revoked``), so a hop holding one stops with that reason, and is not retried
(docs/dpop.md, "Revoking a key while a worker runs").

An embedded system (servers, in-memory broker, an in-process worker) over real HTTP; the key
is revoked through the CLI's own command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

# The real `mock_services`, not tests/mock_services (see tests/e2e/conftest.py).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from infrabot.cli import cli
from infrabot.testing import EmbeddedSystem, embedded_system
from orchestrator._dpop_signer import dpop_key
from orchestrator.audit import StoredRecord
from orchestrator.authserver import open_registry
from orchestrator.client import AuthClient
from orchestrator.runs import HAND_OFF, Exchanged

ARGOCD = "agent:argocd"


def revoke_current(system: EmbeddedSystem, agent: str) -> str:
    """Revoke ``agent``'s one registered DPoP key as an operator does; its kid. The command
    finds the system as it finds `infrabot serve`, by its endpoints.json, and has its
    in-process registry refuse the tokens bound to the key."""
    system.settings.endpoints_file.write_text(json.dumps(system.endpoints))
    (kid,) = open_registry(system.settings).keys_of(f"dpop:{agent}")
    result = CliRunner().invoke(cli, ["keys", "revoke", f"dpop:{agent}", kid,
                                      "--state-dir", str(system.settings.state_dir)])
    assert result.exit_code == 0, result.output
    return kid


def dpop_key_records(system: EmbeddedSystem, agent: str, since: datetime) -> list[StoredRecord]:
    """``agent``'s registrations since ``since``, but for the nonce each new signer meets once
    (``use_dpop_nonce``, docs/dpop.md)."""
    return [r for r in system.system.stack.audit.query(action="dpop_key", since=since)
            if r.performed_by == agent and not r.reason.startswith("dpop_nonce_")]


def exchange_refusals(records: tuple[StoredRecord, ...], agent: str) -> list[str]:
    return [r.reason for r in records
            if r.action == "token_exchange" and r.decision == "deny" and r.performed_by == agent]


def before_first_exchange(system: EmbeddedSystem, agent: str,
                          do: Callable[[], None]) -> None:
    """Run ``do`` once, as ``agent``'s next hop asks for its first token: after the hand-off
    it holds was minted, before it is exchanged."""
    runtime = system.system.runtime
    auth, done = runtime.auth, []

    def first(name: str) -> AuthClient:
        if name == agent and not done:
            done.append(True)
            do()
        return auth(name)

    runtime.auth = first  # type: ignore[method-assign]


@pytest.mark.parametrize("agent", ["agent:infrabot", ARGOCD])
def test_a_running_worker_replaces_a_revoked_key_at_the_next_hop(tmp_path: Path,
                                                                 agent: str) -> None:
    with embedded_system(tmp_path / "state") as system:
        assert system.deploy().status == "succeeded"  # the worker holds the key, registered
        old = revoke_current(system, agent)
        since = datetime.now(UTC)

        run = system.deploy()

        assert (run.status, run.reason) == ("succeeded", "ok")
        assert [e for e in run.run.events if e.detail.kind == "exchange_denied"] == []
        (new,) = open_registry(system.settings).keys_of(f"dpop:{agent}")
        assert new != old
        assert dpop_key(system.settings.keys_dir, agent).kid == new  # the file holds it
        assert system.system.runtime.dpop(agent).key.kid == new  # and the worker signs with it
        # the one refusal (no key registered), then the same request with the new key's proof
        assert exchange_refusals(run.audit, agent) == ["dpop_key_not_registered"]
        assert [(r.decision, r.reason, r.resource)
                for r in dpop_key_records(system, agent, since)] == [
            ("deny", "dpop_key_revoked", ""), ("allow", "ok", f"jkt:{new}")]
        bound = {e.detail.claims["cnf"]["jkt"] for e in run.run.events  # its service tokens
                 if e.agent == agent and isinstance(e.detail, Exchanged)
                 and e.detail.claims and not e.detail.for_.startswith(HAND_OFF)}
        assert bound == {new}
        assert system.deploy().status == "succeeded"  # and the next run needs nothing more
        assert list(open_registry(system.settings).keys_of(f"dpop:{agent}")) == [new]


def test_a_hand_off_bound_to_the_revoked_key_stops_the_hop_without_a_retry(
        tmp_path: Path) -> None:
    with embedded_system(tmp_path / "state") as system:
        assert system.deploy().status == "succeeded"
        runtime = system.system.runtime
        revoked: list[str] = []

        def revoke_and_renew() -> None:  # as the worker's renewal would, before the hop
            revoked.append(revoke_current(system, ARGOCD))
            runtime.register_dpop_keys()

        before_first_exchange(system, ARGOCD, revoke_and_renew)
        since = datetime.now(UTC)
        run = system.deploy()

        (new,) = open_registry(system.settings).keys_of(f"dpop:{ARGOCD}")
        assert revoked[0] != new and runtime.dpop(ARGOCD).key.kid == new
        # argocd's hand-off is bound to the revoked key, which the registry now refuses
        reason = (f"{ARGOCD} exchange for github.deployment_status.create: "
                  "invalid_request (bound_key_revoked)")
        assert (run.status, run.reason) == ("denied", reason)
        assert exchange_refusals(run.audit, ARGOCD) == ["bound_key_revoked"]  # asked once
        # the renewal replaced the key; the refusal is the token's, not the agent's key's, so
        # nothing is registered again
        assert [(r.decision, r.reason) for r in dpop_key_records(system, ARGOCD, since)] == [
            ("deny", "dpop_key_revoked"), ("allow", "ok")]
        assert system.deploy().status == "succeeded"  # the next run's hand-off: the new key
