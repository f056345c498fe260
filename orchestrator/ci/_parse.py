"""GitHub webhook payloads → :class:`CIEvent`.

``deployment`` (action ``created``)::

    {"action": "created",
     "deployment": {"id", "sha", "ref", "environment", "creator": {"login"},
                    "payload": {"service", "trigger", "pr"}},
     "repository": {"full_name"}, "sender": {"login"}}

``deployment.payload`` may be an object or a JSON-encoded object (GitHub passes through what the
deployment's creator sent). The trigger fails closed: it is ``ci_pipeline`` only when
``deployment.creator.login`` is one of the directory's ``ci_apps`` (then ``payload.trigger`` may
still say ``manual``); a deployment created by anyone else, or by no one named, is ``manual``
whatever its payload claims. ``service`` is ``payload.service``, else the repository name. Any
other action is ignored (``action_not_created``).

``workflow_run`` (action ``completed``)::

    {"action": "completed",
     "workflow_run": {"id", "run_attempt", "head_sha", "head_branch", "event", "conclusion", "name",
                      "environment"?, "pull_requests": [{"number"}]?},
     "repository": {"full_name"}, "sender": {"login"}}

Only ``conclusion == "success"`` starts a run (else ignored: ``conclusion_not_success``; other
actions: ``action_not_completed``). ``trigger`` is ``ci_pipeline`` only when ``event`` (what
started the run: ``push``, ``workflow_dispatch``, ...) is one of the directory's ``ci_events``;
any other kind is ``manual``. The environment is ``workflow_run.environment`` when
present, else read from the workflow's name by convention: ``deploy-<env>`` (``deploy-prod``).
``pr`` is the first of ``pull_requests``, if any. ``service`` is the repository name.

In both, the user is ``user:<sender.login>`` (lower-cased). Errors name the payload field.

The delivery's headers and body as the receiver first reads them are here too
(:func:`headers_of`, :func:`delivery_id_of`, :func:`json_object`), refused as
:class:`~orchestrator.ci._answers.Refused`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from orchestrator.audit import contains_raw_jwt
from orchestrator.ci._answers import Refused
from orchestrator.ci._events import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER
from orchestrator.ci._model import (
    DELIVERY_PATTERN,
    REPOSITORY_PATTERN,
    CIEvent,
    Ignored,
    MalformedEvent,
    user_for_login,
)
from orchestrator.identity import Directory

_MISSING = object()
_DEPLOY_NAME = re.compile(r"^deploy-(?P<env>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$", re.IGNORECASE)
_PATHS: dict[str, dict[str, str]] = {
    "deployment": {"commit": "deployment.sha", "ref": "deployment.ref",
                   "environment": "deployment.environment",
                   "service": "deployment.payload.service",
                   "trigger": "deployment.payload.trigger", "pr": "deployment.payload.pr"},
    "workflow_run": {"commit": "workflow_run.head_sha", "ref": "workflow_run.head_branch",
                     "environment": "workflow_run.environment",
                     "service": "repository.full_name", "trigger": "workflow_run.event",
                     "pr": "workflow_run.pull_requests"},
}
_COMMON = {"repository": "repository.full_name", "sender_login": "sender.login",
           "user": "sender.login", "delivery_id": "X-GitHub-Delivery"}


def parse_event(event_type: str, delivery_id: str, payload: dict[str, Any],
                directory: Directory) -> CIEvent | Ignored:
    """The CI event in a GitHub webhook payload, or why it starts no run; ``directory`` names
    the identities and event kinds that are CI.

    Raises :class:`MalformedEvent` naming the first wrong field.
    """
    if event_type == "deployment":
        fields = _deployment(payload, directory)
    elif event_type == "workflow_run":
        fields = _workflow_run(payload, directory)
    else:
        raise MalformedEvent(f"unsupported event {event_type!r}", field="X-GitHub-Event")
    if isinstance(fields, Ignored):
        return fields
    repository = _string(payload, "repository.full_name")
    login = _string(payload, "sender.login")
    fields.setdefault("service", repository.rpartition("/")[2])
    try:
        return CIEvent(delivery_id=delivery_id, event_type=event_type, user=user_for_login(login),
                       sender_login=login, repository=repository, **fields)
    except ValidationError as exc:
        name = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else "payload"
        path = {**_COMMON, **_PATHS[event_type]}.get(name, name)
        raise MalformedEvent(f"{path} is not valid", field=path) from None


def _deployment(payload: dict[str, Any], directory: Directory) -> dict[str, Any] | Ignored:
    action = _get(payload, "action")
    if action is not _MISSING and action != "created":
        return Ignored("action_not_created")
    _object(payload, "deployment")
    if _get(payload, "deployment_status") is not _MISSING:
        # GitHub signs the body, not X-GitHub-Event: a deployment_status delivery (whose sender
        # made the status, not the deployment) is never read as the deployment it names.
        raise MalformedEvent("a deployment_status event's body is not a deployment event",
                             field="X-GitHub-Event")
    extra = _deployment_payload(payload)
    claimed = _string(extra, "trigger", required=False, prefix="deployment.payload")
    by_ci = directory.is_ci_app(_string(payload, "deployment.creator.login", required=False))
    # What the CI app says is ci_pipeline or manual (user_request is a person's own token at
    # POST /runs); anyone else's claim is not read at all: their deployment is manual.
    if by_ci and claimed not in (None, "ci_pipeline", "manual"):
        raise MalformedEvent("deployment.payload.trigger is ci_pipeline or manual",
                             field="deployment.payload.trigger")
    fields: dict[str, Any] = {
        "commit": _string(payload, "deployment.sha"),
        "ref": _string(payload, "deployment.ref", required=False),
        "environment": _string(payload, "deployment.environment"),
        "trigger": (claimed or "ci_pipeline") if by_ci else "manual",
        "pr": extra.get("pr"),
        "task": _string(payload, "deployment.task", required=False) or "deploy",
    }
    service = _string(extra, "service", required=False, prefix="deployment.payload")
    if service is not None:
        fields["service"] = service
    return fields


def _deployment_payload(payload: dict[str, Any]) -> dict[str, Any]:
    value = _get(payload, "deployment.payload")
    if value is _MISSING or value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise MalformedEvent("deployment.payload is not JSON",
                                 field="deployment.payload") from None
    if not isinstance(value, dict):
        raise MalformedEvent("deployment.payload must be an object", field="deployment.payload")
    return value


def _workflow_run(payload: dict[str, Any], directory: Directory) -> dict[str, Any] | Ignored:
    action = _get(payload, "action")
    if action is not _MISSING and action != "completed":
        return Ignored("action_not_completed")
    _object(payload, "workflow_run")
    conclusion = _get(payload, "workflow_run.conclusion")
    if conclusion != "success":
        return Ignored("conclusion_not_success")
    event = _string(payload, "workflow_run.event")
    branch = _string(payload, "workflow_run.head_branch", required=False)
    return {
        "commit": _string(payload, "workflow_run.head_sha"),
        "ref": branch,
        "environment": _environment(payload),
        "trigger": "ci_pipeline" if directory.is_ci_run(event, branch) else "manual",
        "pr": _first_pr(payload),
    }


def _environment(payload: dict[str, Any]) -> str:
    explicit = _string(payload, "workflow_run.environment", required=False)
    if explicit is not None:
        return explicit
    match = _DEPLOY_NAME.fullmatch(_string(payload, "workflow_run.name"))
    if match is None:
        raise MalformedEvent("workflow_run.name must be deploy-<environment> (or set "
                             "workflow_run.environment)", field="workflow_run.name")
    return match["env"]


def _first_pr(payload: dict[str, Any]) -> Any:
    pulls = _get(payload, "workflow_run.pull_requests")
    if pulls is _MISSING or pulls is None or pulls == []:
        return None
    if not isinstance(pulls, list) or not isinstance(pulls[0], dict):
        raise MalformedEvent("workflow_run.pull_requests must be a list of objects",
                             field="workflow_run.pull_requests")
    return pulls[0].get("number")


def _get(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _object(data: dict[str, Any], path: str) -> dict[str, Any]:
    value = _get(data, path)
    if not isinstance(value, dict):
        raise MalformedEvent(f"{path} must be an object", field=path)
    return value


def _string(data: dict[str, Any], path: str, *, required: bool = True,
            prefix: str = "") -> Any:
    """The string at ``path``; None if optional and absent (or null)."""
    value = _get(data, path)
    name = f"{prefix}.{path}" if prefix else path
    if value is _MISSING or value is None:
        if required:
            raise MalformedEvent(f"{name} is missing", field=name)
        return None
    if not isinstance(value, str) or not value or len(value) > 255:
        raise MalformedEvent(f"{name} must be a non-empty string", field=name)
    return value


_SINGLE = {h.lower(): h for h in (EVENT_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER)}


def headers_of(headers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The headers by lower-case name, and which of those that must come once came more than
    once (never resolved first- or last-wins: which one counts would be the sender's choice)."""
    lower: dict[str, str] = {}
    repeated: list[str] = []
    for key, value in headers.items():
        name = str(key).lower()
        if name in lower and name in _SINGLE and _SINGLE[name] not in repeated:
            repeated.append(_SINGLE[name])
        lower[name] = str(value)
    return lower, repeated


def named_delivery(headers: dict[str, str], repeated: list[str]) -> str | None:
    """The delivery id the audit record names: None unless one well-formed id was sent."""
    delivery_id = headers.get("x-github-delivery", "").strip()
    if DELIVERY_HEADER in repeated or not re.fullmatch(DELIVERY_PATTERN, delivery_id):
        return None
    return delivery_id


def delivery_id_of(delivery_id: str) -> str:
    """The delivery id header, checked: it names the delivery in the audit trail and logs."""
    if not delivery_id:
        raise Refused(400, "missing_delivery_id", "X-GitHub-Delivery is required")
    if not re.fullmatch(DELIVERY_PATTERN, delivery_id):
        raise Refused(400, "invalid_delivery_id", "X-GitHub-Delivery is not a delivery id")
    return delivery_id


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(400, "malformed_event", "the body is not JSON", field="body") from None
    if not isinstance(payload, dict):
        raise Refused(400, "malformed_event", "the body must be a JSON object", field="body")
    return payload


def repository_of(payload: dict[str, Any]) -> str | None:
    """``repository.full_name`` if it is a well-formed repository name, for the audit record."""
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    if isinstance(name, str) and re.fullmatch(REPOSITORY_PATTERN, name):
        return None if contains_raw_jwt(name) else name
    return None
