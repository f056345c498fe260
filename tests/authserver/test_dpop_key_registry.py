"""``POST /dpop_keys`` against the client registry: a key that is another principal's, or was
revoked, is a 400 ``invalid_dpop_proof`` with its reason (never a 500); a registry that cannot be
used is 503; registrations lapse after the ``expires_in`` the server answers, and an agent holds
a bounded number of keys, its oldest dropped first."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.authserver import RegistryKeyBook, StateDirRegistry
from orchestrator.authserver._dpop_keys import MAX_KEYS_PER_AGENT
from orchestrator.errors import ConfigError, InvalidDPoPProof, Unavailable
from orchestrator.identity import (
    PublicKey,
    SigningKey,
    generate_private_key,
    jkt_of,
    make_proof,
    signing_key_of,
)

from .conftest import ARGOCD, INFRABOT, AuthServer, refusal, serve

NOW = 1_764_400_000
DAY = 86400


def new_key() -> SigningKey:
    return signing_key_of(generate_private_key("ES256"), "ES256")


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    with serve(tmp_path_factory.mktemp("dpop-keys"), dpop_binding=True) as srv:
        yield srv


def register(srv: AuthServer, agent: str, key: SigningKey) -> httpx.Response:
    nonce = srv.post("/token", {}).headers["dpop-nonce"]
    proof = make_proof(key, method="POST", url=f"{srv.url}/dpop_keys", now=int(time.time()),
                       nonce=nonce)
    return srv.post("/dpop_keys", srv.auth(agent), headers={"DPoP": proof})


def dpop_entries(srv: AuthServer, agent: str) -> list[str]:
    registry = srv.stack.registry
    assert registry is not None
    return [e.kid for e in registry.entries() if e.client_id == f"dpop:{agent}"]


def test_an_agents_own_client_key_is_refused_as_a_dpop_key(bound: AuthServer) -> None:
    before = dpop_entries(bound, INFRABOT)
    body = refusal(register(bound, INFRABOT, bound.stack.clients[INFRABOT]), 400,
                   "invalid_dpop_proof", "dpop_key_in_use")
    assert INFRABOT not in body["error_description"]  # the owner is not named to the caller
    assert dpop_entries(bound, INFRABOT) == before


def test_another_agents_dpop_key_is_refused(bound: AuthServer) -> None:
    shared = new_key()
    assert register(bound, ARGOCD, shared).status_code == 200
    refusal(register(bound, INFRABOT, shared), 400, "invalid_dpop_proof", "dpop_key_in_use")
    assert shared.kid in dpop_entries(bound, ARGOCD)
    assert shared.kid not in dpop_entries(bound, INFRABOT)


def test_a_revoked_dpop_key_is_refused(bound: AuthServer) -> None:
    key = new_key()
    assert register(bound, ARGOCD, key).status_code == 200
    registry = bound.stack.registry
    assert registry is not None
    assert registry.revoke(f"dpop:{ARGOCD}", key.kid, now=int(time.time()))
    body = refusal(register(bound, ARGOCD, key), 400, "invalid_dpop_proof", "dpop_key_revoked")
    assert "revoked" in body["error_description"]
    assert key.kid not in dpop_entries(bound, ARGOCD)


def test_registrations_are_bounded_per_agent_and_answer_their_lifetime(
        tmp_path: Path) -> None:
    with serve(tmp_path, dpop_binding=True) as srv:
        keys = [new_key() for _ in range(MAX_KEYS_PER_AGENT + 5)]
        for key in keys:
            answer = register(srv, INFRABOT, key)
            assert answer.status_code == 200, answer.text
            assert answer.json()["expires_in"] == srv.settings.dpop_key_registration_seconds
        held = dpop_entries(srv, INFRABOT)  # the oldest dropped (within a second: any of them)
        assert len(held) == MAX_KEYS_PER_AGENT and keys[-1].kid in held
        assert srv.stack.auth.dpop.registered(INFRABOT) == set(held)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_a_registration_lapses_after_its_lifetime_unless_renewed(tmp_path: Path) -> None:
    clock = Clock()
    book = RegistryKeyBook(StateDirRegistry(tmp_path), DAY, clock=clock)
    first, second = new_key(), new_key()
    book.register(INFRABOT, first.public, now=NOW)
    book.register(INFRABOT, second.public, now=NOW + DAY // 2)
    assert book.registered(INFRABOT) == {jkt_of(first.public), jkt_of(second.public)}
    clock.now = NOW + DAY + 1
    assert book.registered(INFRABOT) == {jkt_of(second.public)}
    book.register(INFRABOT, second.public, now=clock.now)  # a renewal moves its time
    clock.now = NOW + DAY + DAY // 2 + 10
    assert book.registered(INFRABOT) == {jkt_of(second.public)}
    clock.now += DAY
    assert book.registered(INFRABOT) == frozenset()


class Broken:
    """A registry whose every use fails as an unreadable state directory's does."""

    def renew(self, client_id: str, key: PublicKey, *, now: int, keep: int,
              since: int) -> None:
        raise ConfigError("cannot read the client registry: Permission denied")

    def entries(self, client_id: str | None = None) -> list[object]:
        raise ConfigError("cannot read the client registry: Permission denied")


def test_a_registry_that_cannot_be_used_is_unavailable() -> None:
    book = RegistryKeyBook(Broken(), DAY)  # type: ignore[arg-type]
    with pytest.raises(Unavailable) as raised:
        book.register(INFRABOT, new_key().public, now=NOW)
    assert raised.value.reason == "client_registry_unavailable"
    with pytest.raises(Unavailable) as raised:
        book.registered(INFRABOT)
    assert raised.value.reason == "client_registry_unavailable"


def test_refusals_are_dpop_proof_errors_in_the_book(tmp_path: Path) -> None:
    registry = StateDirRegistry(tmp_path)
    book = RegistryKeyBook(registry, DAY)
    client = new_key()
    registry.add(ARGOCD, [client.public], now=NOW)
    with pytest.raises(InvalidDPoPProof) as raised:
        book.register(ARGOCD, client.public, now=NOW)
    assert raised.value.reason == "dpop_key_in_use"
