"""The private keys a command signs with: only those its host already holds.

Embedded (the in-memory broker), a key is made on first use, as the embedded system makes it.
Distributed, a command loads the key in its state directory and makes none: a key made there
would be one no server knows, on a host that may have to hold none (the ci host holds no private
key; docs/deploy.md). A missing key is one line naming the key and the command that makes it.
"""

from __future__ import annotations

from pathlib import Path

from infrabot.cli._common import CommandError
from orchestrator._dpop_signer import dpop_key, dpop_keys_dir
from orchestrator.config import Settings
from orchestrator.identity import SigningKey
from orchestrator.keystore import client_key, client_keys_dir, load_client_key

ORCHESTRATOR = "client:orchestrator"  # infrabot.stack's ORCHESTRATOR_CLIENT (heavy to import)


def embedded(settings: Settings) -> bool:
    """Embedded mode: the in-memory broker, every agent in one process (as infrabot.stack)."""
    return settings.broker_url.startswith("memory://")


def held_client_key(settings: Settings, client_id: str, made_by: str | None = None) -> SigningKey:
    """``client_id``'s own key (``private_key_jwt``); distributed, only one `infrabot keys
    init` made (a new key would be unknown to the authorization server, which knows clients by
    their registered public keys). ``made_by``: what makes it, when not `keys init`."""
    where = client_keys_dir(settings.keys_dir)
    if embedded(settings):
        return client_key(where, client_id, settings.signing_alg)
    return _load(where, client_id, "key", made_by or (
        f"create it with `infrabot keys init {client_id} --state-dir {settings.state_dir}` and "
        "register its public key (`infrabot keys register`)"))


def orchestrator_key(settings: Settings) -> SigningKey:
    """The orchestrator's key, which `infrabot serve` makes and holds: distributed, a command
    signing as the orchestrator runs on serve's host, with serve's state directory."""
    return held_client_key(settings, ORCHESTRATOR,
                           "`infrabot serve` makes it in its state directory: run this command "
                           "on serve's host, with --state-dir that directory")


def agent_dpop_key(settings: Settings, agent: str) -> SigningKey:
    """``agent``'s DPoP key; distributed, only the one its worker made on this host."""
    if embedded(settings):
        return dpop_key(settings.keys_dir, agent)
    return _load(dpop_keys_dir(settings.keys_dir), agent, "DPoP key",
                 f"a worker of {agent} makes it as it starts (`infrabot worker -Q QUEUE "
                 f"--state-dir {settings.state_dir}`): run this command on that worker's host")


def _load(where: Path, client_id: str, kind: str, made_by: str) -> SigningKey:
    key = load_client_key(where, client_id)
    if key is None:
        raise CommandError(f"no {kind} for {client_id} in {where}: {made_by}")
    return key
