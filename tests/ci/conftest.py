"""The webhook receiver served over real HTTP on loopback, with a recording ``start_run``, an
in-process replay cache, a real run log for its record of deliveries and a real audit store."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from orchestrator._servers import ServerGroup, bind
from orchestrator.audit import AuditStore, StoredRecord
from orchestrator.ci import DELIVERY_HEADER, CIEvent, WebhookReceiver, create_webhook_app
from orchestrator.identity import Directory, MemoryRevocationStore, RevocationStore
from orchestrator.runs import RunStore

SECRET = b"test-webhook-secret"


def github_time(at: float) -> str:
    """A signed time in GitHub's form, for payloads a test writes by hand."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_delivery_id(headers: Mapping[str, str]) -> dict[str, str]:
    """The same delivery under a fresh X-GitHub-Delivery (a header the signature does not cover),
    as anyone who saw it could send it again."""
    return {**headers, DELIVERY_HEADER: str(uuid.uuid4())}


@dataclass
class Starter:
    """A ``start_run`` that records the events it is given, or raises ``error``."""

    events: list[CIEvent] = field(default_factory=list)
    error: Exception | None = None

    def __call__(self, event: CIEvent, *, run_id: str | None = None) -> str:
        if self.error is not None:
            raise self.error
        self.events.append(event)
        return f"run-{len(self.events)}"


@dataclass
class Webhook:
    url: str
    http: httpx.Client
    starter: Starter
    audit: AuditStore
    runs: RunStore
    now: float  # the receiver's clock: the time it was started, frozen

    def post(self, headers: Mapping[str, str], body: bytes) -> httpx.Response:
        return self.http.post("/webhooks/github", headers=dict(headers), content=body)

    def records(self) -> list[StoredRecord]:
        return self.audit.query(service="webhooks")


@contextlib.contextmanager
def serving(receiver: WebhookReceiver) -> Iterator[str]:
    """The receiver's app on 127.0.0.1, a port the OS picks; stopped when the block ends."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    group = ServerGroup()
    group.add(create_webhook_app(receiver), sock)
    with group:
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def running_webhook(tmp_path: Path, directory: Directory,
                    replay: RevocationStore | None = None,
                    runs: RunStore | None = None) -> Iterator[Webhook]:
    """The receiver with its audit store and run log in ``tmp_path`` (or the ``runs`` given)."""
    starter = Starter()
    now = time.time()  # events are built with the real time; their signed times are fresh
    with AuditStore(tmp_path / "audit.sqlite3", writer="webhooks-test") as audit, \
            runs or RunStore(tmp_path / "runs.sqlite3") as log:
        receiver = WebhookReceiver(SECRET, replay or MemoryRevocationStore(), directory, audit,
                                   starter, clock=lambda: now, deliveries=log)
        with serving(receiver) as url, httpx.Client(base_url=url, timeout=10) as http:
            yield Webhook(url, http, starter, audit, log, now)


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunStore]:
    """A run log for receivers a test builds itself (its record of deliveries)."""
    with RunStore(tmp_path_factory.mktemp("deliveries") / "runs.sqlite3") as runs:
        yield runs


@pytest.fixture
def webhook(tmp_path: Path, directory: Directory) -> Iterator[Webhook]:
    with running_webhook(tmp_path, directory) as running:
        yield running
