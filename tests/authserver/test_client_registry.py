"""The client registry: the authorization server knows a client only by the public keys
registered for it, chooses one by the assertion's ``kid``, and applies a registration or a
revocation to the very next request. A claimed client id is a lookup key, never a path."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.authserver import KeyInUse, StateDirRegistry, open_registry
from orchestrator.errors import ConfigError
from orchestrator.identity import CLIENT_ASSERTION_TYPE, SigningKey, make_assertion
from orchestrator.identity._keys import generate_private_key, signing_key_of

from .conftest import ARGOCD, INFRABOT, AuthServer, refusal, serve, sign_raw

NOW = 1_764_400_000


def new_key() -> SigningKey:
    return signing_key_of(generate_private_key("ES256"), "ES256")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[AuthServer]:
    """A server of this test's own: the test changes its registry."""
    with serve(tmp_path) as srv:
        yield srv


def introspect_as(server: AuthServer, client_id: str, assertion: str) -> Any:
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion,
            "client_id": client_id, "token": "x"}
    return server.post("/introspect", form)


def assertion(server: AuthServer, client_id: str, key: SigningKey) -> str:
    return make_assertion(key, issuer=client_id, subject=client_id,
                          audience=f"{server.url}/token", now=int(time.time()))


# -- the state-directory back end --------------------------------------------------------------

def test_add_is_idempotent_and_listed_with_when(tmp_path: Path) -> None:
    registry = StateDirRegistry(tmp_path)
    key = new_key()
    assert registry.add(ARGOCD, [key.public], now=NOW) == [key.kid]
    assert registry.add(ARGOCD, [key.public], now=NOW + 50) == []
    [entry] = registry.entries()
    assert (entry.client_id, entry.kid, entry.alg, entry.added_at) == (ARGOCD, key.kid, "ES256",
                                                                      NOW)
    assert entry.added == "2025-11-29T07:06:40Z"
    assert (tmp_path / "client_registry.json").stat().st_mode & 0o777 == 0o600
    assert "d" not in entry.jwk


def test_one_key_belongs_to_one_client(tmp_path: Path) -> None:
    registry = StateDirRegistry(tmp_path)
    key = new_key()
    registry.add(ARGOCD, [key.public], now=NOW)
    with pytest.raises(KeyInUse, match=f"key {key.kid} is already registered for {ARGOCD}"):
        registry.add(INFRABOT, [new_key().public, key.public], now=NOW)
    assert [e.client_id for e in registry.entries()] == [ARGOCD]  # nothing half-applied


def test_a_change_by_another_process_is_seen_at_the_next_lookup(tmp_path: Path) -> None:
    server_side, admin = StateDirRegistry(tmp_path), StateDirRegistry(tmp_path)
    key = new_key()
    assert server_side.keys_of(ARGOCD) == {}
    admin.add(ARGOCD, [key.public], now=NOW)
    assert list(server_side.keys_of(ARGOCD)) == [key.kid]
    assert admin.remove(ARGOCD, key.kid)
    assert server_side.keys_of(ARGOCD) == {}
    assert not admin.remove(ARGOCD, key.kid)


def test_a_damaged_registry_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "client_registry.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is damaged"):
        StateDirRegistry(tmp_path).keys_of(ARGOCD)


def test_concurrent_registrations_all_land(tmp_path: Path) -> None:
    keys = [new_key() for _ in range(8)]
    threads = [threading.Thread(target=StateDirRegistry(tmp_path).add,
                                args=(f"agent:a{i}", [k.public]), kwargs={"now": NOW})
               for i, k in enumerate(keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.kid for e in StateDirRegistry(tmp_path).entries()) == sorted(
        k.kid for k in keys)


# -- the server ----------------------------------------------------------------------------------

def test_revoking_a_key_refuses_the_next_assertion(own_server: AuthServer) -> None:
    registry = open_registry(own_server.settings)
    key = own_server.stack.clients[ARGOCD]
    assert introspect_as(own_server, ARGOCD, assertion(own_server, ARGOCD, key)).status_code \
        == 200
    assert registry.remove(ARGOCD, key.kid)
    body = refusal(introspect_as(own_server, ARGOCD, assertion(own_server, ARGOCD, key)), 401,
                   "invalid_client", "unknown_client")
    assert "no key is registered" in body["error_description"]


def test_rotation_at_the_server_both_keys_then_only_the_new(own_server: AuthServer) -> None:
    registry = open_registry(own_server.settings)
    old, new = own_server.stack.clients[ARGOCD], new_key()
    registry.add(ARGOCD, [new.public], now=int(time.time()))
    for key in (old, new):  # both valid while the worker moves
        assert introspect_as(own_server, ARGOCD, assertion(own_server, ARGOCD, key)
                             ).status_code == 200
    registry.remove(ARGOCD, old.kid)
    refusal(introspect_as(own_server, ARGOCD, assertion(own_server, ARGOCD, old)), 401,
            "invalid_client", "unknown_key")
    assert introspect_as(own_server, ARGOCD, assertion(own_server, ARGOCD, new)).status_code \
        == 200


def test_an_assertion_without_kid(own_server: AuthServer) -> None:
    key = own_server.stack.clients[ARGOCD]
    claims = {"iss": ARGOCD, "sub": ARGOCD, "aud": f"{own_server.url}/token",
              "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "j" * 16}
    unnamed = sign_raw({"alg": "ES256", "typ": "JWT"}, claims, key)
    assert introspect_as(own_server, ARGOCD, unnamed).status_code == 200  # its only key
    open_registry(own_server.settings).add(ARGOCD, [new_key().public], now=int(time.time()))
    claims["jti"] = "k" * 16
    unnamed = sign_raw({"alg": "ES256", "typ": "JWT"}, claims, key)
    refusal(introspect_as(own_server, ARGOCD, unnamed), 401, "invalid_client", "unknown_key")


def test_an_unreadable_registry_fails_closed(own_server: AuthServer) -> None:
    (own_server.settings.keys_dir / "client_registry.json").write_text("[]")
    key = own_server.stack.clients[ARGOCD]
    refusal(introspect_as(own_server, ARGOCD, assertion(own_server, ARGOCD, key)), 503,
            "temporarily_unavailable", "client_registry_unavailable")


PATH_LIKE = ["../x", "agent:../../etc", "agent:../../planted", "../../planted",
             "agent:..%2F..%2Fplanted", "client:/etc/passwd", "agent:\\..\\planted"]


@pytest.mark.parametrize("client_id", PATH_LIKE)
def test_a_path_like_client_id_is_looked_up_never_opened(own_server: AuthServer,
                                                         client_id: str) -> None:
    """Issue 13: a claimed client id was made into a file path before the directory was
    checked. A key planted where such a path would lead is never read, and no file is opened
    whose name comes from the assertion."""
    attacker = new_key()
    state = own_server.settings.state_dir
    for planted in (state / "planted.jwk.json", state / "keys" / "planted.jwk.json",
                    state.parent / "planted.jwk.json"):
        planted.write_text(str(attacker.public.jwk).replace("'", '"'))
    opened: list[str] = []
    watching = threading.Event()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching.is_set() and event == "open" and isinstance(args[0], (str, bytes, Path)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)
    watching.set()
    try:
        response = introspect_as(own_server, client_id, assertion(own_server, client_id,
                                                                  attacker))
    finally:
        watching.clear()
    refusal(response, 401, "invalid_client", "unknown_client")
    assert not [p for p in opened if "planted" in p or "etc" in p or ".." in p], opened
