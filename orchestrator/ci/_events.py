"""Building GitHub-style webhook deliveries: what the CI simulator sends and the tests replay.

Each builder returns ``(headers, body)`` with a fresh ``X-GitHub-Delivery`` id every call. Pass
``secret`` to have ``X-Hub-Signature-256`` set; otherwise add it with :func:`sign`. The payloads
are exactly what :func:`orchestrator.ci.parse_event` reads (see its module for the fields).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
USER_AGENT = "GitHub-Hookshot/infrabot-simulator"
CI_APP = "infrabot-ci[bot]"  # the CI app the shipped directory names in ci_apps


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def encode(event_type: str, payload: dict[str, Any], *,
           secret: bytes | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body for any payload (a fresh delivery id), signed when ``secret`` is given."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: str(uuid.uuid4()),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers, body


def build_deployment_event(user_login: str, service: str, environment: str, commit: str,
                           trigger: str = "ci_pipeline", repository: str | None = None,
                           pr: int | None = None, *, ref: str = "main", task: str = "deploy",
                           creator: str | None = None, at: float | None = None,
                           secret: bytes | None = None) -> tuple[dict[str, str], bytes]:
    """A ``deployment`` ``created`` delivery; ``user_login`` is ``sam`` or ``user:sam``;
    ``task`` is GitHub's deployment task (``deploy``, ``rollback``). The deployment is created
    by ``creator``: by default the CI app for ``ci_pipeline``, else the user (a person who
    creates a deployment by hand); ``trigger`` is what its payload claims. ``at`` (epoch
    seconds, default now) is its signed ``created_at``."""
    login = user_login.removeprefix("user:")
    if creator is None:
        creator = CI_APP if trigger == "ci_pipeline" else login
    repository = repository or f"acme/{service}"
    extra: dict[str, Any] = {"service": service, "trigger": trigger}
    if pr is not None:
        extra["pr"] = pr
    payload = {
        "action": "created",
        "deployment": {
            "id": _id(), "sha": commit, "ref": ref, "environment": environment,
            "task": task, "creator": {"login": creator}, "payload": extra,
            "created_at": _time(at),
        },
        "repository": _repository(repository),
        "sender": {"login": login},
    }
    return encode("deployment", payload, secret=secret)


def build_workflow_run_event(user_login: str, service: str, environment: str, commit: str,
                             trigger: str = "ci_pipeline", repository: str | None = None,
                             pr: int | None = None, *, conclusion: str = "success",
                             name: str | None = None, ref: str = "main",
                             run_event: str | None = None, run_attempt: int = 1,
                             at: float | None = None, secret: bytes | None = None
                             ) -> tuple[dict[str, str], bytes]:
    """A ``workflow_run`` ``completed`` delivery of the workflow ``deploy-<environment>``.

    ``trigger="manual"`` makes it a ``workflow_dispatch`` run, anything else a ``push`` run
    (the CI event kind the shipped directory lists); ``run_event`` names another kind. ``at``
    (epoch seconds, default now) is its signed ``updated_at``, when it completed.
    ``service`` is carried by the repository name (``acme/<service>`` unless given).
    """
    login = user_login.removeprefix("user:")
    repository = repository or f"acme/{service}"
    event = run_event or ("workflow_dispatch" if trigger == "manual" else "push")
    run = {
        "id": _id(), "run_attempt": run_attempt, "name": name or f"deploy-{environment}",
        "head_sha": commit, "head_branch": ref, "event": event,
        "status": "completed", "conclusion": conclusion, "updated_at": _time(at),
        "pull_requests": [{"number": pr}] if pr is not None else [],
    }
    payload = {
        "action": "completed",
        "workflow_run": run,
        "repository": _repository(repository),
        "sender": {"login": login},
    }
    return encode("workflow_run", payload, secret=secret)


def ping_event(*, secret: bytes | None = None) -> tuple[dict[str, str], bytes]:
    """The ``ping`` GitHub sends when a webhook is created."""
    return encode("ping", {"zen": "Keep it logically awesome.", "hook_id": _id()}, secret=secret)


def _repository(full_name: str) -> dict[str, Any]:
    return {"full_name": full_name, "name": full_name.rpartition("/")[2]}


def _time(at: float | None) -> str:
    """GitHub's form of a time: ``2026-12-06T00:28:23Z``."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _id() -> int:
    return secrets.randbelow(2**53) + 1  # JSON-safe; ids collide (a replay) practically never
