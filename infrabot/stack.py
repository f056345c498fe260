"""Assembling the running system from settings: keys, directory, registry, audit store, the
authorization server and the four mock services, each on its own loopback origin.

:mod:`infrabot.system` starts it (with the orchestrator, the webhook receiver and, embedded,
a worker); distributed mode runs the same stack under ``infrabot serve`` with Redis.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents._runtime import replace_revoked_dpop_key
from mock_services import ServiceDeps, create_declared_app, create_service_app, remote_key_source
from orchestrator._dpop_signer import dpop_key
from orchestrator._servers import bind
from orchestrator.audit import AuditKeys, AuditStore, Checkpointer
from orchestrator.authserver import (
    AuthorizationService,
    ClientKeys,
    ClientRegistry,
    KeyRevoked,
    RegistryKeyBook,
    create_app,
    open_registry,
)
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.errors import ConfigError, InvalidDPoPProof
from orchestrator.identity import Directory, RevocationStore, SigningKey
from orchestrator.keystore import KeyRing, client_key
from orchestrator.keystore import client_keys_dir as keys_dir_of_clients
from orchestrator.registry import open_store
from orchestrator.services import DeclaredService, load_and_install
from orchestrator.workflows import load_directory

SERVER_NAMES = ("auth", *SERVICE_NAMES)
ORCHESTRATOR_CLIENT = "client:orchestrator"


def bind_ports(settings: Settings, names: tuple[str, ...] = SERVER_NAMES) -> tuple[Settings, dict[str, Any]]:
    """Bind a socket per server (port 0 lets the OS choose); settings then name the real ports.
    A name with no port setting of its own is a declared service (``service_ports``)."""
    sockets: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    declared = dict(settings.service_ports)
    try:
        for name in names:
            field_name = f"{name}_port"
            own = field_name in Settings.model_fields
            port = getattr(settings, field_name) if own else declared.get(name, 0)
            sock = bind(settings.host, port)
            sockets[name] = sock
            if own:
                updates[field_name] = sock.getsockname()[1]
            else:
                declared[name] = sock.getsockname()[1]
    except Exception:
        for sock in sockets.values():
            sock.close()
        raise
    return settings.model_copy(update={**updates, "service_ports": declared}), sockets


def client_keys_dir(settings: Settings) -> Path:
    return keys_dir_of_clients(settings.keys_dir)


def is_embedded(settings: Settings) -> bool:
    """Embedded mode: the in-memory broker, every agent in this process."""
    return settings.broker_url.startswith("memory://")


def held_clients(settings: Settings, directory: Directory) -> list[str]:
    """The clients whose private keys this process makes and holds: every agent and client
    when embedded; in distributed mode only the orchestrator (its key roots each run), never an
    agent's (each lives on the hosts of the agent's workers: ``infrabot keys init``)."""
    return directory.client_ids() if is_embedded(settings) else [ORCHESTRATOR_CLIENT]


def provision_clients(settings: Settings, registry: ClientRegistry,
                      client_ids: list[str]) -> dict[str, SigningKey]:
    """Each client's own key pair in the state directory, made on first use, with its public key
    registered (idempotent; this is `keys init` then `keys register`, for keys this process
    holds). An agent's DPoP key, which this process then holds too, is registered as the agent
    registers it at ``POST /dpop_keys``, so the first run's hand-offs can be bound to it.

    A revoked key never comes back: a client key revoked with ``infrabot keys revoke`` stops the
    start with one line naming the command that makes a new one; a revoked DPoP key is replaced
    by a new one, which is registered instead (as a worker does)."""
    now = int(time.time())
    keys = {cid: client_key(client_keys_dir(settings), cid, settings.signing_alg)
            for cid in client_ids}
    book = dpop_book(settings, registry)
    for cid, key in keys.items():
        try:
            registry.add(cid, [key.public], now=now)
        except KeyRevoked:
            raise ConfigError(
                f"{cid}'s key {key.kid} in {client_keys_dir(settings)} was revoked: make a new "
                f"one with `infrabot keys init {cid} --rotate --state-dir {settings.state_dir}`, "
                "then start again", reason="key_revoked") from None
        if cid.startswith("agent:"):
            dpop = dpop_key(settings.keys_dir, cid)
            try:
                book.register(cid, dpop.public, now=now)
            except InvalidDPoPProof as exc:
                if exc.reason != "dpop_key_revoked":
                    raise ConfigError(f"{cid}'s DPoP key: {exc.message}",
                                      reason=exc.reason) from None
                renewed = replace_revoked_dpop_key(settings.keys_dir, cid, dpop.kid)
                book.register(cid, renewed.public, now=now)
    return keys


def dpop_book(settings: Settings, registry: ClientRegistry) -> RegistryKeyBook:
    """Agents' DPoP keys in the client registry, each registration good for
    ``dpop_key_registration_seconds``."""
    return RegistryKeyBook(registry, settings.dpop_key_registration_seconds)


@dataclass
class Stack:
    """Everything one process needs to serve or run workflows. ``clients`` are the private
    keys this process holds (:func:`held_clients`)."""

    settings: Settings
    directory: Directory
    revocation: RevocationStore
    keyring: KeyRing
    audit: AuditStore
    auth: AuthorizationService
    checkpointer: Checkpointer | None = None
    clients: dict[str, SigningKey] = field(default_factory=dict)
    owns_revocation: bool = True
    registry: ClientRegistry | None = None
    declared: tuple[DeclaredService, ...] = ()  # the services the workflows directory declares

    @classmethod
    def build(cls, settings: Settings, *, revocation: RevocationStore | None = None) -> Stack:
        """Load or create everything in the state directory."""
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.keys_dir.mkdir(exist_ok=True, mode=0o700)
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        declared = load_and_install(settings.workflows_dir, directory)
        names = (*SERVICE_NAMES, *(s.name for s in declared))
        settings.service_latency_ms.check_services(names)
        store = revocation if revocation is not None else open_store(settings.redis_url)
        now = int(time.time())
        keyring = KeyRing.open(settings.keys_dir / "signing", settings.signing_alg, now=now)
        audit = AuditStore(settings.audit_target)
        checkpointer = Checkpointer(
            audit, AuditKeys.open(settings.audit_keys_dir, settings.signing_alg, now=now),
            anchor_dir=settings.audit_keys_dir, every_records=settings.audit_checkpoint_records,
            every_seconds=settings.audit_checkpoint_seconds, clock=time.time)
        audit.anchor_with(checkpointer)
        registry = open_registry(settings)
        clients = provision_clients(settings, registry, held_clients(settings, directory))
        auth = AuthorizationService(
            settings=settings, keyring=keyring, directory=directory, revocation=store,
            client_keys=ClientKeys(registry, settings.allowed_algs),
            services={name: settings.service_url(name) for name in names}, audit=audit,
            dpop_keys=dpop_book(settings, registry))
        return cls(settings, directory, store, keyring, audit, auth, checkpointer, clients,
                   owns_revocation=revocation is None, registry=registry, declared=declared)

    def endpoints(self) -> dict[str, str]:
        out = {"auth": self.settings.auth_url}
        out.update({name: self.settings.service_url(name) for name in SERVICE_NAMES})
        out.update({s.name: self.settings.service_url(s.name) for s in self.declared})
        return out

    def apps(self) -> dict[str, Any]:

        deps = ServiceDeps(settings=self.settings, key_source=remote_key_source(self.settings),
                           revocation=self.revocation, directory=self.directory,
                           audit=self.audit, clock=time.time)
        apps: dict[str, Any] = {"auth": create_app(self.auth)}
        apps.update({name: create_service_app(name, deps) for name in SERVICE_NAMES})
        apps.update({s.name: create_declared_app(s, deps) for s in self.declared})
        return apps

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()  # the clean-shutdown checkpoint: the servers have stopped
        self.audit.close()
        if self.registry is not None:
            self.registry.close()
        if self.owns_revocation:
            self.revocation.close()


def write_endpoints(settings: Settings, endpoints: dict[str, str]) -> Path:
    path = settings.endpoints_file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(endpoints, indent=2) + "\n")
    os.replace(tmp, path)
    return path
