"""Verify the signed checkpoints against the chain and say which records they anchor. Pure:
the snapshot, the chain report and the trusted public keys in, a report out.

Every checkpoint must be a JWS of type ``infrabot-audit-checkpoint+jws`` signed by a trusted
audit key (the keys come from the caller, never from the database), agree with its row, be
numbered one after the previous and name the previous one's payload hash. Then the record it
vouches for (writer, seq) must exist with exactly the signed head hash: a chain rewritten and
re-hashed up to or past that record fails here (``rewritten``), whatever the keyless chain says.

A writer's records up to its last good checkpoint are *anchored*; those after it are
*unanchored*: intact as far as the chain can tell, but nothing signed vouches for them yet. A
running writer signs a checkpoint every ``every_records`` records and at most ``every_seconds``
after a record, so a true unanchored tail (a writer killed, or still running) is at most that
long. A longer one means checkpoints are missing (``missing_checkpoints``): deleted, or they
could not be written. The bounds are the writer's own, signed in its last good checkpoint, and
the verifier's :class:`AnchorPolicy` for a writer with none (every checkpoint deleted) or for a
bound an older checkpoint did not sign.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from orchestrator.audit._chain import GENESIS_HASH
from orchestrator.audit._checkpoint import (
    CHECKPOINT_TYP,
    CheckpointPayload,
    CheckpointRow,
    payload_hash,
)
from orchestrator.audit._store import Snapshot
from orchestrator.audit._verify import (
    ChainRow,
    Head,
    Problem,
    ProblemKind,
    VerifyReport,
    verify_rows,
)
from orchestrator.identity import MalformedJWS, PublicKey, unverified_header
from orchestrator.identity import decode_jws as decode
from orchestrator.identity import jws_signature_ok as signature_ok
from orchestrator.identity import split_jws as split

RETIRED_SLACK_SECONDS = 60
TAIL_GRACE_SECONDS = 30.0  # a busy writer's ticker, a slow commit: beyond the signed period
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class AnchorPolicy:
    """The checkpoint bounds the verifier expects of a writer that signed none of its own (the
    writers' ``INFRABOT_AUDIT_CHECKPOINT_RECORDS`` and ``_SECONDS``)."""

    every_records: int
    every_seconds: float


@dataclass(frozen=True)
class WriterAnchor:
    """One writer: how many records, the highest seq, and up to which seq they are anchored."""

    writer: str
    records: int
    last_seq: int
    anchored_seq: int
    checkpoint: int | None
    checkpoint_time: str | None

    @property
    def unanchored(self) -> int:
        return max(self.last_seq - self.anchored_seq, 0)

    def describe(self) -> str:
        text = f"writer {self.writer}: {self.records} records"
        if self.anchored_seq:
            text += (f"; {_span(1, self.anchored_seq)} anchored by checkpoint {self.checkpoint} "
                     f"({self.checkpoint_time})")
        if self.unanchored:
            after = "after the last checkpoint" if self.anchored_seq else "no checkpoint"
            text += f"; {_span(self.anchored_seq + 1, self.last_seq)} unanchored ({after})"
        return text


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}-{last}"


@dataclass(frozen=True)
class TrailReport:
    """The chain report plus what the checkpoints found and anchor."""

    chain: VerifyReport
    problems: tuple[Problem, ...]
    checkpoints: int
    writers: tuple[WriterAnchor, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unanchored(self) -> int:
        return sum(w.unanchored for w in self.writers)


def check_trail(snapshot: Snapshot, keys: Mapping[str, PublicKey], policy: AnchorPolicy
                ) -> TrailReport:
    """The hash chains and the checkpoints of one :meth:`AuditStore.snapshot`, checked with the
    trusted ``keys``; unanchored tails longer than the writers' bounds (or ``policy``) fail."""
    chain = verify_rows(snapshot.rows, snapshot.heads)
    return verify_trail(snapshot.rows, snapshot.heads, snapshot.checkpoints, chain, keys,
                        policy)


def verify_trail(rows: list[ChainRow], heads: Mapping[str, Head],
                 checkpoints: list[CheckpointRow], chain: VerifyReport,
                 keys: Mapping[str, PublicKey], policy: AnchorPolicy) -> TrailReport:
    """Check every checkpoint with ``keys`` and anchor each writer's records."""
    by_place: dict[tuple[str, int], list[ChainRow]] = defaultdict(list)
    by_writer: dict[str, list[ChainRow]] = defaultdict(list)
    for chain_row in rows:
        by_place[(chain_row.writer, chain_row.seq)].append(chain_row)
        by_writer[chain_row.writer].append(chain_row)
    problems: list[Problem] = []
    anchored: dict[str, CheckpointPayload] = {}
    expected, prev = 1, GENESIS_HASH
    for row in sorted(checkpoints, key=lambda c: c.number):
        payload, digest, why = _open(row, keys)
        if payload is None or digest is None:
            problems.append(_problem("forged_checkpoint", row, why))
            expected, prev = row.number + 1, ""  # the next link cannot be checked
            continue
        if row.number != expected:
            missing = (f"checkpoint {expected}" if expected == row.number - 1
                       else f"checkpoints {expected}-{row.number - 1}")
            problems.append(_problem("broken_checkpoint_chain", row, f"{missing} missing"))
        elif prev and payload.prev != prev:
            problems.append(_problem("broken_checkpoint_chain", row,
                                     f"does not link to checkpoint {row.number - 1}"))
        expected, prev = row.number + 1, digest
        candidates = by_place.get((payload.writer, payload.seq), [])
        if not any(c.hash == payload.head_hash for c in candidates):
            found = (f"the record's hash is {candidates[0].hash[:16]}…" if candidates
                     else "the record is missing")
            problems.append(_problem(
                "rewritten", row, f"signed head hash {payload.head_hash[:16]}…, but {found}: "
                                  f"records up to seq {payload.seq} were rewritten or removed"))
            continue
        best = anchored.get(payload.writer)
        if best is None or payload.seq >= best.seq:
            anchored[payload.writer] = payload
    writers = _anchors(rows, heads, anchored)
    rewritten = {p.writer for p in problems if p.kind == "rewritten"}
    for writer in writers:
        if writer.writer not in rewritten and writer.unanchored:
            why = _overlong_tail(writer, anchored.get(writer.writer), policy,
                                 by_writer.get(writer.writer, []))
            if why:
                problems.append(Problem("missing_checkpoints", writer.writer,
                                        writer.anchored_seq + 1, None,
                                        f"{why}: checkpoints were deleted or not written"))
    return TrailReport(chain, (*chain.problems, *problems), len(checkpoints),
                       tuple(writers))


def _overlong_tail(writer: WriterAnchor, signed: CheckpointPayload | None,
                   policy: AnchorPolicy, rows: list[ChainRow]) -> str:
    """Why ``writer``'s unanchored tail (among ``rows``, the writer's own) is longer than a
    running writer leaves one; "" if not."""
    every_records = signed.every_records if signed else policy.every_records
    every_seconds = (signed.every_seconds if signed and signed.every_seconds
                     else policy.every_seconds)
    whose = "the writer's" if signed else "the configured"
    after = "after the last checkpoint" if signed else "and no checkpoint"
    if writer.unanchored > every_records:
        return f"{writer.unanchored} records {after}, more than {whose} every {every_records}"
    times = [_seconds(row.content.get("time")) for row in rows
             if row.seq > writer.anchored_seq and row.content]
    known = [t for t in times if t is not None]
    if known and max(known) - min(known) > every_seconds + TAIL_GRACE_SECONDS:
        span = max(known) - min(known)
        return (f"unanchored records {after} span {span:.0f} s, more than {whose} "
                f"{every_seconds:g} s (+{TAIL_GRACE_SECONDS:g} s grace)")
    return ""


def _seconds(time: object) -> float | None:
    if not isinstance(time, str):
        return None
    try:
        return datetime.strptime(time, _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _open(row: CheckpointRow, keys: Mapping[str, PublicKey]
          ) -> tuple[CheckpointPayload | None, str | None, str]:
    """(payload, payload hash, "") for a checkpoint a trusted key signed, else (None, None, why).
    The key is chosen by ``kid`` among the trusted ones; its own algorithm is the only one
    accepted."""
    parts = split(row.jws)
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
    signed = (payload.number, payload.writer, payload.seq, payload.head_hash, payload.prev)
    if signed != (row.number, row.writer, row.seq, row.head_hash, row.prev):
        return None, None, "the stored row differs from its signed payload"
    if _after_retirement(payload.time, key):
        return None, None, f"signed by audit key {key.kid[:16]} after it was retired"
    return payload, payload_hash(segments.payload), ""


def _after_retirement(time: str, key: PublicKey) -> bool:
    retired = key.jwk.get("retired_at")
    if not isinstance(retired, int):
        return False
    signed = _seconds(time)
    return signed is None or signed > retired + RETIRED_SLACK_SECONDS


def _anchors(rows: list[ChainRow], heads: Mapping[str, Head],
             anchored: Mapping[str, CheckpointPayload]) -> list[WriterAnchor]:
    counts: dict[str, int] = defaultdict(int)
    last: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.writer] += 1
        last[row.writer] = max(last[row.writer], row.seq)
    out = []
    for writer in sorted(set(counts) | set(heads) | set(anchored)):
        head = heads.get(writer)
        last_seq = max(last[writer], head.last_seq if head else 0)
        cp = anchored.get(writer)
        out.append(WriterAnchor(writer, counts[writer], last_seq, cp.seq if cp else 0,
                                cp.number if cp else None, cp.time if cp else None))
    return out


def _problem(kind: ProblemKind, row: CheckpointRow, why: str) -> Problem:
    return Problem(kind, row.writer, row.seq, None, f"checkpoint {row.number}: {why}")
