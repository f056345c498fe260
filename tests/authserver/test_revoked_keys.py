"""A revoked key never comes back: the registry remembers every key ``infrabot keys revoke``
removed (file, SQLite, PostgreSQL) and refuses to register it again; ``serve`` restarting on a
revoked client key stops with one line naming the command to run; a revoked DPoP key is replaced
by a new one, registered instead, as the embedded stack and a worker start."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents._runtime import AgentRuntime, install_agent_keys, register_worker_dpop_keys
from infrabot.stack import ORCHESTRATOR_CLIENT, Stack
from orchestrator._dpop_signer import dpop_key, dpop_keys_dir
from orchestrator.authserver import KeyInUse, open_registry
from orchestrator.authserver._registry import KeyRevoked
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.identity import MemoryRevocationStore
from orchestrator.keystore import client_keys_dir, init_client_key, load_client_key

from .conftest import ARGOCD, INFRABOT, serve
from .test_client_registry import NOW, OpenRegistry, new_key, registry_at

__all__ = ["registry_at"]  # the fixture, over every back end
DISTRIBUTED = "redis://127.0.0.1:1/0"


def test_a_revoked_key_is_never_registered_again(registry_at: OpenRegistry) -> None:
    registry = registry_at()
    key, other = new_key(), new_key()
    registry.add(ARGOCD, [key.public, other.public], now=NOW)
    assert registry.revoke(ARGOCD, key.kid, now=NOW + 10)
    assert list(registry.keys_of(ARGOCD)) == [other.kid]
    assert not registry.revoke(ARGOCD, key.kid, now=NOW + 20)
    for client in (ARGOCD, INFRABOT):  # not for the same client, nor for another
        with pytest.raises(KeyRevoked, match=f"key {key.kid} was revoked"):
            registry_at().add(client, [new_key().public, key.public], now=NOW + 30)
    with pytest.raises(KeyRevoked):
        registry_at().renew(f"dpop:{ARGOCD}", key.public, now=NOW, keep=4, since=0)
    assert [e.kid for e in registry_at().entries()] == [other.kid]  # all or nothing
    assert KeyRevoked("x").reason == "key_revoked"


def test_a_key_no_longer_registered_may_be_revoked_by_its_thumbprint(
        registry_at: OpenRegistry) -> None:
    """An agent's DPoP key dropped by a renewal (its tokens may still live): with
    ``unregistered``, a kid no client holds and none revoked is remembered as revoked; never
    one another client holds, and never twice."""
    registry = registry_at()
    dropped, held = new_key(), new_key()
    registry.add(ARGOCD, [held.public], now=NOW)
    dpop = f"dpop:{ARGOCD}"
    assert not registry.revoke(dpop, dropped.kid, now=NOW)  # not without saying so
    assert registry.revoke(dpop, dropped.kid, now=NOW, unregistered=True)
    assert not registry.revoke(dpop, dropped.kid, now=NOW + 1, unregistered=True)
    assert not registry.revoke(dpop, held.kid, now=NOW, unregistered=True)  # ARGOCD's own
    assert [(r.client_id, r.kid) for r in registry_at().revoked()] == [(dpop, dropped.kid)]
    assert list(registry_at().keys_of(ARGOCD)) == [held.kid]
    with pytest.raises(KeyRevoked):
        registry_at().renew(dpop, dropped.public, now=NOW + 2, keep=4, since=0)


def test_remove_is_not_revoke(registry_at: OpenRegistry) -> None:
    registry = registry_at()
    key = new_key()
    registry.add(ARGOCD, [key.public], now=NOW)
    assert registry.remove(ARGOCD, key.kid)
    assert registry.add(ARGOCD, [key.public], now=NOW + 1) == [key.kid]


def test_a_renewal_keeps_the_newest_and_drops_the_lapsed(registry_at: OpenRegistry) -> None:
    registry = registry_at()
    dpop = f"dpop:{ARGOCD}"
    keys = [new_key() for _ in range(5)]
    for n, key in enumerate(keys):
        registry.renew(dpop, key.public, now=NOW + n, keep=3, since=0)
    assert [e.kid for e in registry.entries(dpop)] == [k.kid for k in keys[2:]]
    registry.renew(dpop, keys[2].public, now=NOW + 10, keep=3, since=0)  # its time moves
    assert [(e.kid, e.added_at) for e in registry_at().entries(dpop)] == [
        (keys[3].kid, NOW + 3), (keys[4].kid, NOW + 4), (keys[2].kid, NOW + 10)]
    registry.renew(dpop, keys[2].public, now=NOW + 20, keep=3, since=NOW + 4)
    assert [e.kid for e in registry.entries(dpop)] == [keys[4].kid, keys[2].kid]
    registry.add(INFRABOT, [keys[0].public], now=NOW)
    with pytest.raises(KeyInUse):
        registry.renew(dpop, keys[0].public, now=NOW + 30, keep=3, since=0)


def build(settings: Settings) -> None:
    Stack.build(settings, revocation=MemoryRevocationStore()).close()


def test_serve_restarting_on_a_revoked_orchestrator_key_stops_with_one_line(
        tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, broker_url=DISTRIBUTED)
    build(settings)
    (kid,) = open_registry(settings).keys_of(ORCHESTRATOR_CLIENT)
    assert open_registry(settings).revoke(ORCHESTRATOR_CLIENT, kid, now=int(time.time()))
    with pytest.raises(ConfigError) as raised:
        build(settings)
    assert raised.value.reason == "key_revoked"
    assert raised.value.message == (
        f"client:orchestrator's key {kid} in {client_keys_dir(settings.keys_dir)} was revoked: "
        "make a new one with `infrabot keys init client:orchestrator --rotate --state-dir "
        f"{tmp_path}`, then start again")
    assert kid not in open_registry(settings).keys_of(ORCHESTRATOR_CLIENT)
    new = init_client_key(client_keys_dir(settings.keys_dir), ORCHESTRATOR_CLIENT, "ES256",
                          rotate=True).key
    build(settings)  # what the line says, then serve starts on the new key
    assert list(open_registry(settings).keys_of(ORCHESTRATOR_CLIENT)) == [new.kid]


def test_the_embedded_stack_replaces_a_revoked_dpop_key(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    build(settings)
    dpop = f"dpop:{ARGOCD}"
    (old,) = open_registry(settings).keys_of(dpop)
    assert open_registry(settings).revoke(dpop, old, now=int(time.time()))
    build(settings)
    (new,) = open_registry(settings).keys_of(dpop)
    assert new != old
    assert dpop_key(settings.keys_dir, ARGOCD).kid == new  # the file holds the new key


def test_a_worker_whose_dpop_key_was_revoked_registers_a_new_one(tmp_path: Path) -> None:
    with serve(tmp_path, dpop_binding=True) as srv:
        registry = srv.stack.registry
        assert registry is not None
        dpop = f"dpop:{INFRABOT}"
        (old,) = registry.keys_of(dpop)
        assert registry.revoke(dpop, old, now=int(time.time()))
        keys = {INFRABOT: srv.stack.clients[INFRABOT]}
        runtime = AgentRuntime.build(srv.settings, endpoints={"auth": srv.url}, keys=keys)
        try:
            runtime.register_dpop_keys()
            (new,) = registry.keys_of(dpop)
            assert new != old and runtime.dpop(INFRABOT).key.kid == new
            on_disk = load_client_key(dpop_keys_dir(srv.settings.keys_dir), INFRABOT)
            assert on_disk is not None and on_disk.kid == new
            runtime.register_dpop_keys()  # a renewal keeps the new key
            assert list(registry.keys_of(dpop)) == [new]
            assert runtime.auth(INFRABOT).dpop is runtime.dpop(INFRABOT)
        finally:
            runtime.close()
        # a worker's start-up registration, on a key revoked since
        assert registry.revoke(dpop, new, now=int(time.time()))
        (srv.settings.state_dir / "endpoints.json").write_text(f'{{"auth": "{srv.url}"}}')
        install_agent_keys(keys)
        try:
            register_worker_dpop_keys(srv.settings)
        finally:
            install_agent_keys({})
        (newer,) = registry.keys_of(dpop)
        assert newer not in (old, new)
        assert dpop_key(srv.settings.keys_dir, INFRABOT).kid == newer
