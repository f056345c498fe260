"""The client registry: the authorization server knows a client only by the public keys
registered for it, chooses one by the assertion's ``kid``, and applies a registration or a
revocation to the very next request. A claimed client id is a lookup key, never a path."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.authserver import (
    ClientRegistry,
    KeyInUse,
    SqlClientRegistry,
    StateDirRegistry,
    open_registry,
)
from orchestrator.errors import ConfigError
from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    SigningKey,
    generate_private_key,
    make_assertion,
    signing_key_of,
)
from tests._postgres import fresh_schema, raw

from .conftest import ARGOCD, INFRABOT, AuthServer, refusal, serve, sign_raw

NOW = 1_764_400_000


def new_key() -> SigningKey:
    return signing_key_of(generate_private_key("ES256"), "ES256")


BACK_ENDS = ["file", "sqlite", "postgresql"]


@contextlib.contextmanager
def database_url(back_end: str, tmp_path: Path) -> Iterator[str | None]:
    """``INFRABOT_DATABASE_URL`` for ``back_end``: none (the state directory's file), a SQLite
    directory, or a fresh PostgreSQL schema."""
    if back_end == "file":
        yield None
    elif back_end == "sqlite":
        yield f"sqlite:///{tmp_path / 'db'}"
    else:
        with fresh_schema() as url:
            yield url


OpenRegistry = Callable[[], ClientRegistry]


@pytest.fixture(params=BACK_ENDS)
def registry_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenRegistry]:
    """Opens another registry on one store of each back end (as another process would)."""
    opened: list[ClientRegistry] = []
    with database_url(request.param, tmp_path) as url:
        def open_() -> ClientRegistry:
            registry: ClientRegistry = (StateDirRegistry(tmp_path) if url is None else
                                        SqlClientRegistry(_target(url)))
            opened.append(registry)
            return registry
        try:
            yield open_
        finally:
            for registry in opened:
                registry.close()


def _target(url: str) -> Path | str:
    return Path(url.removeprefix("sqlite://")) / "clients.sqlite3" if url.startswith(
        "sqlite:") else url


@pytest.fixture(params=BACK_ENDS)
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthServer]:
    """A server of this test's own on each registry back end: the test changes its registry."""
    with database_url(request.param, tmp_path) as url, \
            serve(tmp_path, database_url=url) as srv:
        yield srv


def introspect_as(server: AuthServer, client_id: str, assertion: str) -> Any:
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion,
            "client_id": client_id, "token": "x"}
    return server.post("/introspect", form)


def assertion(server: AuthServer, client_id: str, key: SigningKey) -> str:
    return make_assertion(key, issuer=client_id, subject=client_id,
                          audience=f"{server.url}/token", now=int(time.time()))


# -- the back ends: the state directory's file, SQLite, PostgreSQL -----------------------------

def test_add_is_idempotent_and_listed_with_when(registry_at: OpenRegistry) -> None:
    registry = registry_at()
    key = new_key()
    assert registry.add(ARGOCD, [key.public], now=NOW) == [key.kid]
    assert registry.add(ARGOCD, [key.public], now=NOW + 50) == []
    assert registry_at().add(ARGOCD, [key.public, key.public], now=NOW + 60) == []
    [entry] = registry.entries()
    assert (entry.client_id, entry.kid, entry.alg, entry.added_at) == (ARGOCD, key.kid, "ES256",
                                                                      NOW)
    assert entry.added == "2025-11-29T07:06:40Z"
    assert entry.jwk == key.public.jwk and "d" not in entry.jwk
    assert list(registry.keys_of(ARGOCD)) == [key.kid]


def test_the_file_is_owner_only(tmp_path: Path) -> None:
    StateDirRegistry(tmp_path).add(ARGOCD, [new_key().public], now=NOW)
    assert (tmp_path / "client_registry.json").stat().st_mode & 0o777 == 0o600


def test_entries_are_by_client_then_time(registry_at: OpenRegistry) -> None:
    registry = registry_at()
    first, second, other = new_key(), new_key(), new_key()
    registry.add(INFRABOT, [second.public], now=NOW + 5)
    registry.add(INFRABOT, [first.public], now=NOW)
    registry.add(ARGOCD, [other.public], now=NOW + 9)
    assert [(e.client_id, e.kid) for e in registry.entries()] == [
        (ARGOCD, other.kid), (INFRABOT, first.kid), (INFRABOT, second.kid)]


def test_one_key_belongs_to_one_client(registry_at: OpenRegistry) -> None:
    registry = registry_at()
    key = new_key()
    registry.add(ARGOCD, [key.public], now=NOW)
    with pytest.raises(KeyInUse, match=f"key {key.kid} is already registered for {ARGOCD}"):
        registry.add(INFRABOT, [new_key().public, key.public], now=NOW)
    assert [e.client_id for e in registry.entries()] == [ARGOCD]  # nothing half-applied


def test_a_change_by_another_process_is_seen_at_the_next_lookup(
        registry_at: OpenRegistry) -> None:
    server_side, admin = registry_at(), registry_at()
    key = new_key()
    assert server_side.keys_of(ARGOCD) == {}
    admin.add(ARGOCD, [key.public], now=NOW)
    assert list(server_side.keys_of(ARGOCD)) == [key.kid]
    assert admin.remove(ARGOCD, key.kid)
    assert server_side.keys_of(ARGOCD) == {}
    assert not admin.remove(ARGOCD, key.kid)


def test_a_change_that_keeps_the_files_times_inode_and_size_is_seen(tmp_path: Path) -> None:
    # On a filesystem with coarse timestamps a revoke and a same-size registration within one
    # tick leave the file's mtime, inode (reused) and size as they were: the server must still
    # see the new content, never keep accepting the revoked key.
    server_side, old, new = StateDirRegistry(tmp_path), new_key(), new_key()
    server_side.add(ARGOCD, [old.public], now=NOW)
    assert list(server_side.keys_of(ARGOCD)) == [old.kid]
    path = tmp_path / "client_registry.json"
    before, text = path.stat(), path.read_text()
    for name in ("x", "y"):
        text = text.replace(old.public.jwk[name], new.public.jwk[name])
    text = text.replace(old.kid, new.kid)
    with path.open("r+") as fp:  # in place: the same inode
        fp.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino, after.st_size) == (
        before.st_mtime_ns, before.st_ino, before.st_size)
    assert list(server_side.keys_of(ARGOCD)) == [new.kid]


def test_a_damaged_registry_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "client_registry.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is damaged"):
        StateDirRegistry(tmp_path).keys_of(ARGOCD)


def test_concurrent_registrations_all_land(registry_at: OpenRegistry) -> None:
    keys = [new_key() for _ in range(8)]
    threads = [threading.Thread(target=registry_at().add,
                                args=(f"agent:a{i}", [k.public]), kwargs={"now": NOW})
               for i, k in enumerate(keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.kid for e in registry_at().entries()) == sorted(k.kid for k in keys)


def test_the_same_key_for_two_clients_at_once_goes_to_one(registry_at: OpenRegistry) -> None:
    key = new_key()
    outcomes: list[str] = []

    def register(registry: ClientRegistry, client_id: str) -> None:
        try:
            registry.add(client_id, [key.public], now=NOW)
            outcomes.append("added")
        except KeyInUse:
            outcomes.append("refused")

    threads = [threading.Thread(target=register, args=(registry_at(), cid))
               for cid in (ARGOCD, INFRABOT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added", "refused"]
    assert [e.kid for e in registry_at().entries()] == [key.kid]


def test_a_newer_registry_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.sqlite3"
    SqlClientRegistry(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema version 99 is newer"):
        SqlClientRegistry(path)


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


def break_registry(server: AuthServer) -> None:
    """Make the server's registry unusable: a damaged file, or its table gone from the
    database (what a query meets when the database cannot serve it)."""
    settings = server.settings
    if settings.database_url is None:
        (settings.keys_dir / "client_registry.json").write_text("[]")
        return
    target = settings.registry_target
    if isinstance(target, Path):
        with sqlite3.connect(target) as conn:
            conn.execute("DROP TABLE client_keys")
    else:
        with raw(target) as conn:
            conn.execute("DROP TABLE client_keys")


def test_an_unreadable_registry_fails_closed(own_server: AuthServer) -> None:
    break_registry(own_server)
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
