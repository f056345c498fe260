"""Walk every writer's hash chain and name each problem found. Pure: rows in, report out.

How each tampering shows up:

* ``edited``: a record's stored hash is not the hash of its content (a field was changed), or a
  writer's last record does not match the writer's head (the tail was rewritten and re-hashed).
* ``deleted``: a gap in a writer's ``seq`` numbers, or the head counts more records than remain
  (the tail was removed). Reported once per gap, at the first missing ``seq``.
* ``inserted``: a record whose writer has no head, whose ``seq`` is beyond the head or duplicates
  another's, or whose ``prev_hash`` links to no record of its writer (forged, or its predecessor
  was rewritten with a recomputed hash).
* ``reordered``: records of one writer stored (row id order) in a different order than their
  ``seq`` (rows swapped), or a ``prev_hash`` that links to a record other than its predecessor.

See :mod:`orchestrator.audit._chain` for what a keyless chain cannot detect, and
:mod:`orchestrator.audit._anchor` for the signed checkpoints that detect it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.audit._chain import GENESIS_HASH, link_hash

ProblemKind = Literal[
    "edited", "deleted", "inserted", "reordered",
    # found by the signed checkpoints (orchestrator.audit._anchor)
    "forged_checkpoint", "broken_checkpoint_chain", "rewritten", "missing_checkpoints",
    # found by the anchor, the newest checkpoint kept outside the database
    "anchor_missing", "forged_anchor",
]


@dataclass(frozen=True)
class Problem:
    """One finding: what kind, where (writer, seq, row id when the row exists), and why."""

    kind: ProblemKind
    writer: str
    seq: int
    record_id: int | None
    detail: str

    def __str__(self) -> str:
        if not self.writer:  # about no record (a forged anchor)
            return f"{self.kind}: {self.detail}"
        where = f"writer {self.writer} seq {self.seq}"
        if self.record_id is not None:
            where += f" (record id {self.record_id})"
        return f"{self.kind}: {where}: {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`AuditStore.verify`: ``ok`` only if no problem was found."""

    records: int
    writers: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ChainRow:
    """A stored row as verification sees it; ``content`` is None if it could not be decoded."""

    id: int
    writer: str
    seq: int
    prev_hash: str
    hash: str
    content: dict[str, Any] | None

    def expected_hash(self) -> str | None:
        """None if the content did not decode, or does not encode again to be hashed: a lone
        surrogate (ValueError), or nested deeper than the encoder can go from where it is
        called (RecursionError). The store never hashed such content."""
        if self.content is None:
            return None
        try:
            return link_hash(self.prev_hash, self.content, self.writer, self.seq)
        except (ValueError, RecursionError):
            return None

    @property
    def intact(self) -> bool:
        return self.expected_hash() == self.hash


@dataclass(frozen=True)
class Head:
    last_seq: int
    last_hash: str


_HEAD_TYPES = (str, int, str)


def typed(row: tuple[Any, ...], types: tuple[type, ...], what: str) -> tuple[Any, ...]:
    """``row`` if its leading columns have their types; a damaged database can break that
    (ValueError naming the row, never a TypeError deep in verification)."""
    if not all(type(value) is kind for value, kind in zip(row, types, strict=False)):
        raise ValueError(f"{what} {row[0]!r:.20} is damaged: a column does not hold its type")
    return row


def heads_of(rows: Iterable[tuple[Any, ...]]) -> dict[str, Head]:
    """The writer heads from ``writers`` rows (writer, last_seq, last_hash), type-checked."""
    return {writer: Head(last_seq, last_hash)
            for writer, last_seq, last_hash in (typed(row, _HEAD_TYPES, "writer head")
                                                for row in rows)}


def verify_rows(rows: Iterable[ChainRow], heads: Mapping[str, Head]) -> VerifyReport:
    """Check every writer's chain; ``rows`` in any order, ``heads`` from the writers table."""
    by_writer: dict[str, list[ChainRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.id):
        by_writer[row.writer].append(row)
    problems: list[Problem] = []
    for writer in sorted(set(by_writer) | set(heads)):
        problems.extend(_check_writer(writer, by_writer.get(writer, []), heads.get(writer)))
    count = sum(len(group) for group in by_writer.values())
    return VerifyReport(records=count, writers=len(by_writer), problems=tuple(problems))


def _check_writer(writer: str, rows: list[ChainRow], head: Head | None) -> list[Problem]:
    if head is None:
        return [
            _problem("inserted", r, "writer has no head: not written by an audit store")
            for r in rows
        ]
    stray = {r.id for r in rows if r.seq < 1 or r.seq > head.last_seq}
    problems = [
        _problem("inserted", r, f"seq outside the writer head's 1-{head.last_seq}")
        for r in rows
        if r.id in stray
    ]
    chained = [r for r in rows if r.id not in stray]
    walk, duplicates = _walk(writer, chained, head)
    problems += walk + duplicates
    dropped = {p.record_id for p in duplicates}
    problems += _order(writer, [r for r in chained if r.id not in dropped])
    return sorted(problems, key=lambda p: (p.seq, p.record_id or 0))


def _walk(writer: str, rows: list[ChainRow], head: Head) -> tuple[list[Problem], list[Problem]]:
    """Follow the chain in seq order; returns (chain problems, duplicate-seq problems)."""
    by_seq: dict[int, list[ChainRow]] = defaultdict(list)
    for row in rows:
        by_seq[row.seq].append(row)
    problems: list[Problem] = []
    duplicates: list[Problem] = []
    hashes = {r.hash: r for r in rows}
    prev: ChainRow | None = None
    for seq in sorted(by_seq):
        row, extra = _pick(by_seq[seq], prev)
        duplicates += [
            _problem("inserted", r, f"duplicate seq; record id {row.id} is linked") for r in extra
        ]
        expected_seq = prev.seq + 1 if prev else 1
        if seq > expected_seq:
            problems.append(_gap(writer, expected_seq, seq - 1, f"before seq {seq}"))
        if not row.intact:
            problems.append(_problem("edited", row, "hash does not match the record content"))
        elif seq == expected_seq:
            problems += _link(row, prev, hashes)
        prev = row
    problems += _tail(writer, prev, head)
    return problems, duplicates


def _pick(candidates: list[ChainRow], prev: ChainRow | None) -> tuple[ChainRow, list[ChainRow]]:
    """Among rows sharing a seq, the genuine one is intact and linked to the predecessor."""
    for row in candidates:
        if row.intact and _links_to(row, prev):
            return row, [r for r in candidates if r is not row]
    return candidates[0], candidates[1:]


def _links_to(row: ChainRow, prev: ChainRow | None) -> bool:
    if prev is None:
        return row.prev_hash == GENESIS_HASH
    return row.prev_hash in (prev.hash, prev.expected_hash())


def _link(row: ChainRow, prev: ChainRow | None, hashes: Mapping[str, ChainRow]) -> list[Problem]:
    if _links_to(row, prev):
        return []
    target = hashes.get(row.prev_hash)
    if target is not None:
        detail = f"prev_hash links to seq {target.seq} (record id {target.id}), not its predecessor"
        return [_problem("reordered", row, detail)]
    return [
        _problem(
            "inserted",
            row,
            "prev_hash links to no record of this writer "
            "(forged, or its predecessor was rewritten)",
        )
    ]


def _tail(writer: str, last: ChainRow | None, head: Head) -> list[Problem]:
    last_seq = last.seq if last else 0
    if last_seq < head.last_seq:
        where = f"at the tail (the writer head is seq {head.last_seq})"
        return [_gap(writer, last_seq + 1, head.last_seq, where)]
    if last is not None and last.intact and last.hash != head.last_hash:
        return [_problem("edited", last, "last record does not match the writer head")]
    return []


def _order(writer: str, rows: list[ChainRow]) -> list[Problem]:
    """Rows of one writer are appended in seq order, so row ids must rise with seq."""
    problems: list[Problem] = []
    highest: ChainRow | None = None
    for row in rows:  # id order
        if highest is not None and row.seq < highest.seq:
            detail = f"stored after seq {highest.seq} (record id {highest.id})"
            problems.append(_problem("reordered", row, detail))
        elif highest is None or row.seq > highest.seq:
            highest = row
    return problems


def _gap(writer: str, first: int, last: int, where: str) -> Problem:
    span = f"seq {first}" if first == last else f"seq {first}-{last} ({last - first + 1} records)"
    return Problem("deleted", writer, first, None, f"{span} missing {where}")


def _problem(kind: ProblemKind, row: ChainRow, detail: str) -> Problem:
    return Problem(kind, row.writer, row.seq, row.id, detail)
