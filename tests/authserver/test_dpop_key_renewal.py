"""A worker renews its agents' DPoP key registrations on a timer, not only when its agents
exchange: an idle host's registration must not lapse, or hand-offs get bound to another host's
key alone and this host's hops are refused (agents/_runtime.py, docs/dpop.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agents._runtime import AgentRuntime, install_agent_keys, renew_worker_dpop_keys
from orchestrator._dpop_signer import dpop_keys_dir
from orchestrator.identity import generate_private_key
from orchestrator.keystore import client_key_path, load_client_key, write_private

from .conftest import INFRABOT, serve


def test_an_idle_workers_lapsed_registration_is_renewed_without_any_hop(tmp_path: Path) -> None:
    with serve(tmp_path, dpop_binding=True) as srv:
        registry = srv.stack.registry
        assert registry is not None
        dpop = f"dpop:{INFRABOT}"
        (kid,) = registry.keys_of(dpop)
        (srv.settings.state_dir / "endpoints.json").write_text(f'{{"auth": "{srv.url}"}}')
        install_agent_keys({INFRABOT: srv.stack.clients[INFRABOT]})
        stop = threading.Event()
        renewal = threading.Thread(target=renew_worker_dpop_keys, args=(srv.settings, stop, 0.05))
        try:
            assert registry.remove(dpop, kid)  # as if it lapsed while no hop came
            renewal.start()
            deadline = time.monotonic() + 10.0
            while not registry.keys_of(dpop) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert list(registry.keys_of(dpop)) == [kid]
        finally:
            stop.set()
            renewal.join(5.0)
            install_agent_keys({})
        assert not renewal.is_alive()


def test_a_replacement_that_was_revoked_too_is_replaced_in_turn(tmp_path: Path) -> None:
    with serve(tmp_path, dpop_binding=True) as srv:
        registry = srv.stack.registry
        assert registry is not None
        dpop, where = f"dpop:{INFRABOT}", dpop_keys_dir(srv.settings.keys_dir)
        keys = {INFRABOT: srv.stack.clients[INFRABOT]}
        runtime = AgentRuntime.build(srv.settings, endpoints={"auth": srv.url}, keys=keys)
        try:
            first = runtime.dpop(INFRABOT).key.kid  # this process signs with it
            # another process replaced it in the state directory, and that key was revoked too
            write_private(client_key_path(where, INFRABOT), generate_private_key("ES256"))
            second = load_client_key(where, INFRABOT)
            assert second is not None
            registry.add(dpop, [second.public], now=int(time.time()))
            assert registry.revoke(dpop, second.kid, now=int(time.time()))
            assert registry.revoke(dpop, first, now=int(time.time()))
            runtime.register_dpop_keys()
            (third,) = registry.keys_of(dpop)
            assert third not in (first, second.kid)
            assert runtime.dpop(INFRABOT).key.kid == third
        finally:
            runtime.close()
