"""``infrabot keys revoke dpop:AGENT KID`` also refuses the tokens already bound to the key
(``bound_key_revoked``), where the revocation registry is: on Redis, written by the command
itself, whether or not serve runs; in a running serve's own registry, through its
``/revocations`` as the orchestrator (one audit record). When the registry cannot be told,
nothing is revoked (the key stays registered) and the command says so in one line, exit 1: it
may be run again. A key no longer registered is revoked by its thumbprint; one revoked before
has its tokens refused again (docs/dpop.md, "Revoking a key")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from _cli import clean_env, infrabot, run_all, serving

from orchestrator.audit import AuditStore
from orchestrator.authserver import open_registry
from orchestrator.config import Settings
from orchestrator.identity import MAX_LIFETIME_SECONDS, generate_private_key, public_key_of

AGENT = "dpop:agent:argocd"
BOUND = "tokens already bound to it are refused (bound_key_revoked)"


def register_dpop_key(state: Path) -> str:
    """An agent's DPoP key in the state directory's client registry, as a worker registers it;
    its kid (the thumbprint tokens are bound to)."""
    key = public_key_of(generate_private_key("ES256"), "ES256")
    registry = open_registry(Settings(state_dir=state))
    try:
        registry.renew(AGENT, key, now=int(time.time()), keep=32, since=0)
    finally:
        registry.close()
    return key.kid


def registered(state: Path) -> list[str]:
    """The kids registered for the agent (serve registers a DPoP key of its own as it
    starts)."""
    registry = open_registry(Settings(state_dir=state))
    try:
        return [entry.kid for entry in registry.entries(AGENT)]
    finally:
        registry.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.mark.redis
def test_on_redis_the_command_refuses_the_bound_tokens_itself(
        state: Path, redis_url: str, redis_client: redis.Redis) -> None:
    kid = register_dpop_key(state)
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=redis_url)

    result = infrabot("keys", "revoke", AGENT, kid, env=env).ok()

    assert result.text == (f"revoked {AGENT} {kid}: proofs by it no longer prove agent:argocd, "
                           f"and {BOUND}")
    ttl = redis_client.ttl(f"infrabot:jkt:{kid}")
    assert MAX_LIFETIME_SECONDS < ttl <= MAX_LIFETIME_SECONDS + 60  # past any bound token
    assert kid not in registered(state)


def test_a_registry_that_cannot_be_told_revokes_nothing(state: Path) -> None:
    kid = register_dpop_key(state)
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL="redis://127.0.0.1:1/0")

    result = infrabot("keys", "revoke", AGENT, kid, env=env)

    assert result.error_line() == (
        "nothing was revoked: the revocation registry (INFRABOT_REDIS_URL) cannot be reached; "
        "run this again once it answers")
    assert kid in registered(state)  # not half done: the key still proves the agent


@pytest.mark.redis
def test_another_clients_key_or_no_thumbprint_writes_nothing(
        state: Path, redis_url: str, redis_client: redis.Redis) -> None:
    kid = register_dpop_key(state)
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=redis_url)

    other, typo = run_all([(("keys", "revoke", "dpop:agent:infrabot", kid), env),
                           (("keys", "revoke", AGENT, "8J4f-typo"), env)])

    assert other.error_line() == (f"no key {kid!r} is registered for 'dpop:agent:infrabot' "
                                  f"(it is {AGENT}'s)")
    assert typo.error_line() == (f"no key '8J4f-typo' is registered for {AGENT!r}, and it is no "
                                 "key's thumbprint (43 of A-Z a-z 0-9 _ -)")
    assert redis_client.keys("infrabot:jkt:*") == []
    assert kid in registered(state)


@pytest.mark.redis
def test_a_key_no_longer_registered_is_revoked_by_its_thumbprint(
        state: Path, redis_url: str, redis_client: redis.Redis) -> None:
    """Its registration lapsed, or the agent's cap dropped it, while tokens bound to it live."""
    kid = register_dpop_key(state)
    registry = open_registry(Settings(state_dir=state))
    registry.remove(AGENT, kid)  # as a renewal drops a lapsed key
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=redis_url)

    result = infrabot("keys", "revoke", AGENT, kid, env=env).ok()

    assert result.text == (f"revoked {AGENT} {kid} (no longer registered: it lapsed or was "
                           f"dropped): proofs by it no longer prove agent:argocd, and {BOUND}")
    assert redis_client.exists(f"infrabot:jkt:{kid}") == 1
    assert [r.kid for r in registry.revoked()] == [kid]  # and never registered again
    registry.close()


@pytest.mark.redis
def test_revoking_a_key_again_refuses_its_tokens_again(
        state: Path, redis_url: str, redis_client: redis.Redis) -> None:
    """A revocation that stopped half way, or was made before tokens went with their key."""
    kid = register_dpop_key(state)
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=redis_url)
    infrabot("keys", "revoke", AGENT, kid, env=env).ok()
    redis_client.delete(f"infrabot:jkt:{kid}")

    again = infrabot("keys", "revoke", AGENT, kid, env=env).ok()

    assert again.text == f"{AGENT} {kid} was revoked before; {BOUND}"
    assert redis_client.exists(f"infrabot:jkt:{kid}") == 1


def test_with_serve_running_its_own_registry_is_told(state: Path) -> None:
    env = clean_env(INFRABOT_STATE_DIR=str(state))
    with serving(state, env):
        kid = register_dpop_key(state)
        result = infrabot("keys", "revoke", AGENT, kid, env=env).ok()
        assert result.text.endswith(f"and {BOUND}")
    with AuditStore(Settings(state_dir=state).audit_db) as audit:
        records = [(r.decision, r.reason, r.performed_by, r.resource)
                   for r in audit.query(action="revoke")]
    assert records == [("allow", "jkt_revoked", "client:orchestrator", f"jkt:{kid}")]
    assert kid not in registered(state)


def test_with_nothing_running_and_no_redis_nothing_needs_telling(state: Path) -> None:
    kid = register_dpop_key(state)
    result = infrabot("keys", "revoke", AGENT, kid,
                      env=clean_env(INFRABOT_STATE_DIR=str(state))).ok()
    assert "no server runs from this state directory" in result.text
    assert kid not in registered(state)
