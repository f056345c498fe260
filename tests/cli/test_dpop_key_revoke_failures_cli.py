"""``infrabot keys revoke dpop:AGENT KID`` where it fails, each time one line and exit 1:

- the key is registered or revoked for another client between the command's check and its
  write to the client registry (a race): the registry is left as the other client left it (no
  revocation for the agent), while the tokens bound to the key are refused, as the line says
  (they go first: docs/dpop.md, "Revoking a key");
- the running ``serve`` refuses the ``jkt`` revocation (its ``/revocations``), here because the
  orchestrator's key the command signs with is not the one serve knows: nothing is revoked, the
  key stays registered, and serve audits the refusal, never a ``jkt_revoked``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from _cli import clean_env, infrabot, serving
from click.testing import CliRunner

from infrabot.cli._keys import keys
from orchestrator.audit import AuditStore
from orchestrator.authserver import ClientRegistry, StateDirRegistry, open_registry
from orchestrator.config import Settings
from orchestrator.identity import (
    MAX_LIFETIME_SECONDS,
    PublicKey,
    generate_private_key,
    public_key_of,
)

AGENT = "dpop:agent:argocd"
OTHER = "dpop:agent:infrabot"
ORCHESTRATOR = "client:orchestrator"
RACE = ("{kid!r} was registered or revoked for another client meanwhile: tokens bound to it "
        "are refused, the registry is unchanged")
REFUSED = ("nothing was revoked: the authorization server at {auth} did not take the "
           "revocation ({why}); run this again")

Snapshot = tuple[list[tuple[str, str]], list[tuple[str, str]]]


def dpop_key() -> PublicKey:
    return public_key_of(generate_private_key("ES256"), "ES256")


def opened(state: Path) -> ClientRegistry:
    return open_registry(Settings(state_dir=state))


def snapshot(state: Path) -> Snapshot:
    """Who holds each registered key, and who each revoked one was revoked for."""
    registry = opened(state)
    try:
        return ([(e.client_id, e.kid) for e in registry.entries()],
                [(r.client_id, r.kid) for r in registry.revoked()])
    finally:
        registry.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory of the test's own (the package's is shared by a module's tests): a
    key one test rotates is never another's."""
    path = tmp_path / "state"
    path.mkdir()
    return path


# -- the race: between the check (who holds the key) and the registry's write ----------------

def _lapsed(registry: ClientRegistry, key: PublicKey) -> None:
    """The agent's registration lapsed (a renewal dropped it): the command sees no owner."""
    registry.remove(AGENT, key.kid)


def _registered_by_other(registry: ClientRegistry, key: PublicKey) -> None:
    registry.renew(OTHER, key, now=int(time.time()), keep=32, since=0)


def _moved_to_other(registry: ClientRegistry, key: PublicKey) -> None:
    registry.remove(AGENT, key.kid)
    _registered_by_other(registry, key)


def _revoked_for_other(registry: ClientRegistry, key: PublicKey) -> None:
    """Another administrator's `infrabot keys revoke dpop:agent:infrabot KID`, at once."""
    assert registry.revoke(OTHER, key.kid, now=int(time.time()), unregistered=True)


Change = Callable[[ClientRegistry, PublicKey], None]
RACES: dict[str, tuple[Change | None, Change]] = {  # before the command; between check and write
    "lapsed-then-registered-by-another": (_lapsed, _registered_by_other),
    "registered-then-moved-to-another": (None, _moved_to_other),
    "lapsed-then-revoked-for-another": (_lapsed, _revoked_for_other),
}


@pytest.mark.redis
@pytest.mark.parametrize("race", list(RACES))
def test_dpop_key_taken_by_another_client_meanwhile_is_one_line_and_exit_1(
        race: str, state: Path, redis_url: str, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    before, meanwhile = RACES[race]
    key = dpop_key()
    registry = opened(state)
    registry.renew(AGENT, key, now=int(time.time()), keep=32, since=0)
    if before is not None:
        before(registry, key)
    registry.close()
    write = StateDirRegistry.revoke
    seen: list[tuple[str, Snapshot]] = []

    def racing(self: StateDirRegistry, client_id: str, kid: str, *, now: int,
               unregistered: bool = False) -> bool:
        """The command's write (for the agent), once another client has taken the key (in
        another process, as far as the command can tell: the registry file under its lock)."""
        if client_id != AGENT:  # the other client's own revocation, as it is
            return write(self, client_id, kid, now=now, unregistered=unregistered)
        other = opened(state)
        try:
            meanwhile(other, key)
        finally:
            other.close()
        seen.append((client_id, snapshot(state)))
        return write(self, client_id, kid, now=now, unregistered=unregistered)

    monkeypatch.setattr(StateDirRegistry, "revoke", racing)
    env: dict[str, str | None] = {name: None for name in os.environ
                                  if name.startswith("INFRABOT_")}
    env.update(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=redis_url)

    result = CliRunner().invoke(keys, ["revoke", AGENT, key.kid], env=env)

    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"Error: {RACE.format(kid=key.kid)}\n"
    [(client_id, taken)] = seen  # the command wrote once, for the agent, after the change
    assert client_id == AGENT
    assert snapshot(state) == taken  # as the other client left it: no revocation by the agent
    assert (AGENT, key.kid) not in taken[0] + taken[1]
    ttl = redis_client.ttl(f"infrabot:jkt:{key.kid}")  # "tokens bound to it are refused"
    assert MAX_LIFETIME_SECONDS < ttl <= MAX_LIFETIME_SECONDS + 60


# -- serve refuses the jkt revocation -------------------------------------------------------

def _rotate(env: dict[str, str], state: Path) -> None:
    """A new orchestrator key, not yet registered (`keys init --rotate`, the first step)."""
    infrabot("keys", "init", ORCHESTRATOR, "--rotate", env=env).ok()


def _revoke(env: dict[str, str], state: Path) -> None:
    """The orchestrator's registered key revoked while serve runs, the key file kept."""
    [kid] = [k for client, k in snapshot(state)[0] if client == ORCHESTRATOR]
    infrabot("keys", "revoke", ORCHESTRATOR, kid, env=env).ok()


MISMATCHES: dict[str, tuple[Callable[[dict[str, str], Path], None], str, str]] = {
    "rotated-not-registered": (_rotate, ("the assertion's kid names no key registered for "
                                         "this client"), "unknown_key"),
    "revoked": (_revoke, "no key is registered for this client", "unknown_client"),
}


@pytest.mark.parametrize("mismatch", list(MISMATCHES))
def test_dpop_key_revocation_serve_refuses_revokes_nothing(mismatch: str, state: Path) -> None:
    spoil, why, reason = MISMATCHES[mismatch]
    env = clean_env(INFRABOT_STATE_DIR=str(state))
    key = dpop_key()
    with serving(state, env) as urls:
        registry = opened(state)
        registry.renew(AGENT, key, now=int(time.time()), keep=32, since=0)
        registry.close()
        spoil(env, state)
        before = snapshot(state)

        result = infrabot("keys", "revoke", AGENT, key.kid, env=env)

        assert result.returncode == 1, result
        assert result.error_line() == REFUSED.format(auth=urls["auth"], why=why)
        assert result.stdout == ""
        assert snapshot(state) == before  # not half done: the key still proves the agent
        assert (AGENT, key.kid) in before[0]
        assert key.kid not in [kid for _, kid in before[1]]
    with AuditStore(Settings(state_dir=state).audit_db) as audit:
        records = [(r.decision, r.reason, r.status, r.resource)
                   for r in audit.query(action="revoke")]
    assert records == [("deny", reason, 401, "")]  # serve refused it (invalid_client), no more
