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

from mock_services import ServiceDeps, create_service_app, remote_key_source
from orchestrator._servers import bind
from orchestrator.audit import AuditKeys, AuditStore, Checkpointer
from orchestrator.authserver import (
    AuthorizationService,
    ClientKeys,
    ClientRegistry,
    create_app,
    open_registry,
)
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.identity import (
    Directory,
    KeyRing,
    RevocationStore,
    SigningKey,
    client_key,
    load_directory,
)
from orchestrator.identity import client_keys_dir as keys_dir_of_clients
from orchestrator.registry import open_store

SERVER_NAMES = ("auth", *SERVICE_NAMES)
ORCHESTRATOR_CLIENT = "client:orchestrator"


def bind_ports(settings: Settings, names: tuple[str, ...] = SERVER_NAMES) -> tuple[Settings, dict[str, Any]]:
    """Bind a socket per server (port 0 lets the OS choose); settings then name the real ports."""
    sockets: dict[str, Any] = {}
    updates: dict[str, int] = {}
    try:
        for name in names:
            sock = bind(settings.host, getattr(settings, f"{name}_port"))
            sockets[name] = sock
            updates[f"{name}_port"] = sock.getsockname()[1]
    except Exception:
        for sock in sockets.values():
            sock.close()
        raise
    return settings.model_copy(update=updates), sockets


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
    holds)."""
    now = int(time.time())
    keys = {cid: client_key(client_keys_dir(settings), cid, settings.signing_alg)
            for cid in client_ids}
    for cid, key in keys.items():
        registry.add(cid, [key.public], now=now)
    return keys


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

    @classmethod
    def build(cls, settings: Settings, *, revocation: RevocationStore | None = None) -> Stack:
        """Load or create everything in the state directory."""
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.keys_dir.mkdir(exist_ok=True, mode=0o700)
        directory = load_directory(settings.workflows_dir / "directory.yaml")
        store = revocation if revocation is not None else open_store(settings.redis_url)
        now = int(time.time())
        keyring = KeyRing.open(settings.keys_dir / "signing", settings.signing_alg, now=now)
        audit = AuditStore(settings.audit_target)
        checkpointer = Checkpointer(
            audit, AuditKeys.open(settings.audit_keys_dir, settings.signing_alg, now=now),
            every_records=settings.audit_checkpoint_records,
            every_seconds=settings.audit_checkpoint_seconds, clock=time.time)
        audit.on_append(checkpointer.appended)
        registry = open_registry(settings)
        clients = provision_clients(settings, registry, held_clients(settings, directory))
        auth = AuthorizationService(
            settings=settings, keyring=keyring, directory=directory, revocation=store,
            client_keys=ClientKeys(registry, settings.allowed_algs),
            services={name: settings.service_url(name) for name in SERVICE_NAMES}, audit=audit)
        return cls(settings, directory, store, keyring, audit, auth, checkpointer, clients,
                   owns_revocation=revocation is None, registry=registry)

    def endpoints(self) -> dict[str, str]:
        out = {"auth": self.settings.auth_url}
        out.update({name: self.settings.service_url(name) for name in SERVICE_NAMES})
        return out

    def apps(self) -> dict[str, Any]:

        deps = ServiceDeps(settings=self.settings, key_source=remote_key_source(self.settings),
                           revocation=self.revocation, directory=self.directory,
                           audit=self.audit, clock=time.time)
        apps: dict[str, Any] = {"auth": create_app(self.auth)}
        apps.update({name: create_service_app(name, deps) for name in SERVICE_NAMES})
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
