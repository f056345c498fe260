"""Export audit records: JSON lines, and OCSF 1.1 "API Activity" events for a SIEM.

OCSF mapping (class 6003, category 6 "Application Activity"):

* ``activity_id`` from the verb of ``action`` (``metrics:query`` -> Read, ``deploy:create`` ->
  Create, ``token_exchange`` -> Create, ``token:revoke`` -> Delete, unknown -> 99 Other);
* ``status`` / ``status_id``: Success (1) for ``allow``, Failure (2) for ``deny``;
  ``status_detail`` is the reason code, ``status_code`` / ``api.response.code`` the HTTP status;
* ``actor.user.uid`` is the principal (``on_behalf_of``), ``actor.invoked_by`` the current actor
  (``performed_by``; OCSF 1.1 has no ``app_name``), ``actor.authorizations`` the decision;
* ``api.operation`` / ``api.service.name`` / ``api.request.uid``, ``resources[].uid``;
* ``metadata.correlation_uid`` is the run id; the delegation chain, scopes, context, ``jti``
  and reason (OCSF has no delegation-chain attribute) go to ``unmapped``, with the hash-chain
  fields when the record came from the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from orchestrator._display import safe_json
from orchestrator.audit._record import AuditRecord, StoredRecord

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "InfraBot Chains", "vendor_name": "InfraBot"}
API_ACTIVITY_CLASS_UID = 6003
APPLICATION_ACTIVITY_CATEGORY_UID = 6

_ACTIVITIES = {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}
_VERBS_BY_ACTIVITY = {
    1: "create post raise open add init issue exchange trigger page comment",
    2: "read query get list describe view search fetch introspect",
    3: "update write patch edit put ack acknowledge resolve rollback restart scale tag merge deploy",
    4: "delete remove revoke destroy terminate close clean",
}
_VERBS = {verb: uid for uid, verbs in _VERBS_BY_ACTIVITY.items() for verb in verbs.split()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_jsonl(records: Iterable[AuditRecord], fp: IO[str]) -> int:
    """Write one JSON object per line (stored records keep their chain fields); returns count.

    Non-printable characters are JSON escapes (:func:`~orchestrator._display.safe_json`): the
    data, and so the hashes, stay exact; nothing raw reaches a terminal showing the file."""
    count = 0
    for record in records:
        data = record.to_json() if isinstance(record, StoredRecord) else record.content()
        fp.write(safe_json(data, separators=(",", ":")) + "\n")
        count += 1
    return count


def activity_id(action: str) -> int:
    """OCSF API Activity id for an action such as ``metrics:query`` or ``token_exchange``."""
    words = action.lower().replace("-", "_").replace(":", "_").replace(".", "_").split("_")
    for word in reversed(words):
        if word in _VERBS:
            return _VERBS[word]
    return 99


def to_ocsf(record: AuditRecord) -> dict[str, Any]:
    """One OCSF 1.1 API Activity event (a plain JSON-ready dict)."""
    activity = activity_id(record.action)
    allowed = record.decision == "allow"
    event: dict[str, Any] = {
        "category_uid": APPLICATION_ACTIVITY_CATEGORY_UID,
        "category_name": "Application Activity",
        "class_uid": API_ACTIVITY_CLASS_UID,
        "class_name": "API Activity",
        "activity_id": activity,
        "activity_name": _ACTIVITIES[activity],
        "type_uid": API_ACTIVITY_CLASS_UID * 100 + activity,
        "type_name": f"API Activity: {_ACTIVITIES[activity]}",
        "time": (record.time - _EPOCH) // timedelta(milliseconds=1),
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1 if allowed else 2,
        "status": "Success" if allowed else "Failure",
        "status_detail": record.reason,
        "message": _message(record),
        "actor": _actor(record),
        "api": _api(record),
        "resources": [{"uid": record.resource}],
        "metadata": _metadata(record),
        "unmapped": _unmapped(record),
    }
    if record.status is not None:
        event["status_code"] = str(record.status)
    return event


def _actor(record: AuditRecord) -> dict[str, Any]:
    actor: dict[str, Any] = {"authorizations": [{"decision": record.decision}]}
    if record.on_behalf_of is not None:
        actor["user"] = {"uid": record.on_behalf_of, "name": record.on_behalf_of}
    if record.performed_by is not None:
        actor["invoked_by"] = record.performed_by
    return actor


def _api(record: AuditRecord) -> dict[str, Any]:
    api: dict[str, Any] = {"operation": record.action, "service": {"name": record.service}}
    if record.request_id is not None:
        api["request"] = {"uid": record.request_id}
    if record.status is not None:
        api["response"] = {"code": record.status}
    return api


def _metadata(record: AuditRecord) -> dict[str, Any]:
    metadata: dict[str, Any] = {"product": dict(PRODUCT), "version": OCSF_VERSION}
    if record.run_id is not None:
        metadata["correlation_uid"] = record.run_id
    if isinstance(record, StoredRecord):
        metadata["uid"] = f"{record.writer}:{record.seq}"
    return metadata


def _unmapped(record: AuditRecord) -> dict[str, Any]:
    unmapped: dict[str, Any] = {
        "chain": list(record.chain),
        "scopes": list(record.scopes),
        "context": dict(record.context),
        "jti": record.jti,
        "reason": record.reason,
    }
    if isinstance(record, StoredRecord):
        unmapped["audit"] = {
            "id": record.id,
            "writer": record.writer,
            "seq": record.seq,
            "prev_hash": record.prev_hash,
            "hash": record.hash,
        }
    return unmapped


def _message(record: AuditRecord) -> str:
    who = record.performed_by or "anonymous"
    whom = f" on behalf of {record.principal}" if record.on_behalf_of else ""
    return f"{who}{whom}: {record.action} {record.resource}: {record.decision} ({record.reason})"
