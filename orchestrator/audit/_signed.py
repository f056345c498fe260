"""Open a signed checkpoint: a compact JWS of type ``infrabot-audit-checkpoint+jws`` checked with
trusted audit public keys (chosen by ``kid``, each with its own algorithm only; a retired key's
signature after its retirement is refused). What a checkpoint row and an anchor file
(:mod:`._anchorfile`) both go through before anything they say is believed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import ValidationError

from orchestrator.audit._checkpoint import CHECKPOINT_TYP, CheckpointPayload, payload_hash
from orchestrator.identity import MalformedJWS, PublicKey, unverified_header
from orchestrator.identity import decode_jws as decode
from orchestrator.identity import jws_signature_ok as signature_ok
from orchestrator.identity import split_jws as split

RETIRED_SLACK_SECONDS = 60
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def open_checkpoint(jws: str, keys: Mapping[str, PublicKey]
                    ) -> tuple[CheckpointPayload | None, str | None, str]:
    """(payload, payload hash, "") for a checkpoint a trusted key signed, else (None, None, why)."""
    parts = split(jws)
    if parts is None:
        return None, None, "not a compact JWS"
    try:
        header = unverified_header(parts[0])
        kid = header.get("kid")
        key = keys.get(kid) if isinstance(kid, str) else None
        if header.get("typ") != CHECKPOINT_TYP:
            return None, None, "not a checkpoint (wrong typ)"
        if key is None:
            return None, None, f"signed by an unknown audit key (kid {str(kid)[:16]!r})"
        if header.get("alg") != key.alg:
            return None, None, "algorithm does not match the audit key's"
        segments = decode(parts)
        if not signature_ok(segments, key):
            return None, None, "bad signature"
        payload = CheckpointPayload.model_validate(json.loads(segments.payload))
    except (MalformedJWS, ValidationError, ValueError, RecursionError):
        return None, None, "malformed checkpoint"
    if _after_retirement(payload.time, key):
        return None, None, f"signed by audit key {key.kid[:16]} after it was retired"
    return payload, payload_hash(segments.payload), ""


def seconds(time: object) -> float | None:
    """A record's or checkpoint's time as a POSIX timestamp; None if it is not one."""
    if not isinstance(time, str):
        return None
    try:
        return datetime.strptime(time, _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _after_retirement(time: str, key: PublicKey) -> bool:
    retired = key.jwk.get("retired_at")
    if not isinstance(retired, int):
        return False
    signed = seconds(time)
    return signed is None or signed > retired + RETIRED_SLACK_SECONDS
