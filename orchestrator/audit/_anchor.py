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

Those bounds cannot catch a rewrite short enough to pass for a tail: delete every checkpoint,
keep the records few and their times close, and what is left looks like a fresh writer's. Only
something outside the database can tell: the *anchor*, the newest checkpoint the writer signed,
kept beside the audit key (:mod:`._anchorfile`). Given one, its signature is checked like any
checkpoint's (``forged_anchor`` if it fails), and the database must hold that very checkpoint
(``anchor_missing``: deleted, or the database replaced by an older copy) and, if it does not,
still the record it vouches for with the signed hash (``rewritten``). An anchor older than the
trail passes: checkpoints are one chain, so the database's newer ones extend it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.audit._chain import GENESIS_HASH
from orchestrator.audit._checkpoint import CheckpointPayload, CheckpointRow
from orchestrator.audit._signed import open_checkpoint, seconds
from orchestrator.audit._store import Snapshot
from orchestrator.audit._verify import (
    ChainRow,
    Head,
    Problem,
    ProblemKind,
    VerifyReport,
    verify_rows,
)
from orchestrator.identity import PublicKey

TAIL_GRACE_SECONDS = 30.0  # a busy writer's ticker, a slow commit: beyond the signed period


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
    anchor: CheckpointPayload | None = None  # the anchor held to, once its signature checked

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unanchored(self) -> int:
        return sum(w.unanchored for w in self.writers)


def check_trail(snapshot: Snapshot, keys: Mapping[str, PublicKey], policy: AnchorPolicy,
                anchor: str | None = None) -> TrailReport:
    """The hash chains and the checkpoints of one :meth:`AuditStore.snapshot`, checked with the
    trusted ``keys``; unanchored tails longer than the writers' bounds (or ``policy``) fail, and
    so does a trail that lacks the ``anchor`` checkpoint (its JWS, kept outside the database)."""
    chain = verify_rows(snapshot.rows, snapshot.heads)
    return verify_trail(snapshot.rows, snapshot.heads, snapshot.checkpoints, chain, keys,
                        policy, anchor)


def verify_trail(rows: list[ChainRow], heads: Mapping[str, Head],
                 checkpoints: list[CheckpointRow], chain: VerifyReport,
                 keys: Mapping[str, PublicKey], policy: AnchorPolicy,
                 anchor: str | None = None) -> TrailReport:
    """Check every checkpoint (and the ``anchor``) with ``keys`` and anchor each writer's
    records."""
    by_place: dict[tuple[str, int], list[ChainRow]] = defaultdict(list)
    by_writer: dict[str, list[ChainRow]] = defaultdict(list)
    for chain_row in rows:
        by_place[(chain_row.writer, chain_row.seq)].append(chain_row)
        by_writer[chain_row.writer].append(chain_row)
    problems: list[Problem] = []
    anchored: dict[str, CheckpointPayload] = {}
    opened: dict[int, str] = {}  # number: payload hash, of each checkpoint that verified
    expected, prev = 1, GENESIS_HASH
    for row in sorted(checkpoints, key=lambda c: c.number):
        payload, digest, why = _open(row, keys)
        if payload is None or digest is None:
            problems.append(_problem("forged_checkpoint", row, why))
            expected, prev = row.number + 1, ""  # the next link cannot be checked
            continue
        opened[row.number] = digest
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
    held = None
    if anchor is not None:
        held, missed = _hold_to_anchor(anchor, keys, checkpoints, opened, by_place, problems)
        problems.extend(missed)
    return TrailReport(chain, (*chain.problems, *problems), len(checkpoints),
                       tuple(writers), held)


def _hold_to_anchor(jws: str, keys: Mapping[str, PublicKey], checkpoints: list[CheckpointRow],
                    opened: Mapping[int, str], by_place: Mapping[tuple[str, int], list[ChainRow]],
                    found: list[Problem]) -> tuple[CheckpointPayload | None, list[Problem]]:
    """The anchor (a checkpoint's JWS kept outside the database), if a trusted key signed it,
    and what the trail lacks of it: the checkpoint itself (``anchor_missing``: deleted, or the
    database replaced by an older copy) and the record it vouches for (``rewritten``)."""
    payload, digest, why = open_checkpoint(jws, keys)
    if payload is None or digest is None:
        if any(c.jws == jws for c in checkpoints):
            return None, []  # a checkpoint of the database: reported already, as forged
        return None, [Problem("forged_anchor", "", 0, None,
                              f"the anchor: {why}: it vouches for nothing")]
    number = payload.number
    if opened.get(number) == digest:
        return payload, []  # in the database: its own check covers the record it names
    if any(p.kind == "missing_checkpoints" and p.writer == payload.writer
           and p.seq <= payload.seq for p in found):
        return payload, []  # said already: the checkpoints over those records are gone
    numbers = [c.number for c in checkpoints]
    gone = (f"checkpoint {number} in the database is another one" if number in numbers
            else "the database holds no checkpoint" if not numbers
            else f"the database's checkpoints stop at {max(numbers)}" if max(numbers) < number
            else f"checkpoint {number} is not in the database")
    problems = [Problem("anchor_missing", payload.writer, payload.seq, None,
                        f"the anchor is checkpoint {number} ({payload.time}), but {gone}: "
                        "checkpoints were deleted, or the database was replaced by an older "
                        "copy")]
    candidates = by_place.get((payload.writer, payload.seq), [])
    if not any(c.hash == payload.head_hash for c in candidates):
        held = (f"the record's hash is {candidates[0].hash[:16]}…" if candidates
                else "the record is missing")
        problems.append(Problem(
            "rewritten", payload.writer, payload.seq, None,
            f"the anchor (checkpoint {number}): signed head hash {payload.head_hash[:16]}…, "
            f"but {held}: records up to seq {payload.seq} were rewritten or removed"))
    return payload, problems


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
    times = [seconds(row.content.get("time")) for row in rows
             if row.seq > writer.anchored_seq and row.content]
    known = [t for t in times if t is not None]
    if known and max(known) - min(known) > every_seconds + TAIL_GRACE_SECONDS:
        span = max(known) - min(known)
        return (f"unanchored records {after} span {span:.0f} s, more than {whose} "
                f"{every_seconds:g} s (+{TAIL_GRACE_SECONDS:g} s grace)")
    return ""


def _open(row: CheckpointRow, keys: Mapping[str, PublicKey]
          ) -> tuple[CheckpointPayload | None, str | None, str]:
    """(payload, payload hash, "") for a checkpoint a trusted key signed and its row agrees
    with, else (None, None, why)."""
    payload, digest, why = open_checkpoint(row.jws, keys)
    if payload is None:
        return None, None, why
    signed = (payload.number, payload.writer, payload.seq, payload.head_hash, payload.prev)
    if signed != (row.number, row.writer, row.seq, row.head_hash, row.prev):
        return None, None, "the stored row differs from its signed payload"
    return payload, digest, ""


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
