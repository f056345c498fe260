"""verify(): an untouched trail is intact; each tampering is named with its kind, writer and seq.

The attacker here has the database (the SQLite file, or PostgreSQL as its owner): they turn the
guard triggers off and edit rows directly, and where it matters they recompute hashes (the chain
is keyless). Every test runs on both back ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.audit import AuditStore, Problem
from orchestrator.audit._chain import link_hash

_CHAIN = ("id", "writer", "seq", "prev_hash", "hash")


@pytest.fixture
def trail(target: Path | str, make_record) -> Path | str:
    """Writers A and B, five records each, interleaved: A's rows get ids 1, 3, 5, 7, 9."""
    with AuditStore(target, writer="A") as a, AuditStore(target, writer="B") as b:
        for i in range(1, 6):
            a.append(make_record(resource=f"a-{i}"))
            b.append(make_record(resource=f"b-{i}", decision="deny", reason="token_expired"))
    return target


def _verify(path: Path | str) -> list[Problem]:
    with AuditStore(path) as store:
        return list(store.verify().problems)


def _kinds(problems: list[Problem]) -> list[tuple[str, str, int, int | None]]:
    return [(p.kind, p.writer, p.seq, p.record_id) for p in problems]


def _row(conn: Any, writer: str, seq: int) -> dict[str, Any]:
    cursor = conn.execute("SELECT * FROM records WHERE writer = ? AND seq = ?", (writer, seq))
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def _content(row: dict[str, Any]) -> dict[str, Any]:
    content = {k: v for k, v in row.items() if k not in _CHAIN}
    for name in ("chain", "scopes", "context"):
        content[name] = json.loads(content[name])
    return content


def _insert(conn: Any, row: dict[str, Any]) -> int:
    row = {k: v for k, v in row.items() if k != "id"}
    sql = (f"INSERT INTO records ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
           "RETURNING id")
    return int(conn.execute(sql, list(row.values())).fetchone()[0])


def _forge(row: dict[str, Any], *, seq: int, prev_hash: str, **changes: Any) -> dict[str, Any]:
    """A record with a valid-looking hash: what an attacker who read _chain.py can produce."""
    forged = {**row, **changes, "seq": seq, "prev_hash": prev_hash}
    forged["hash"] = link_hash(prev_hash, _content(forged), forged["writer"], seq)
    return forged


def test_untouched_trail_verifies(trail: Path | str) -> None:
    with AuditStore(trail) as store:
        report = store.verify()
    assert report.ok and report.problems == ()
    assert (report.records, report.writers) == (10, 2)


def test_empty_store_verifies(target: Path | str) -> None:
    with AuditStore(target) as store:
        report = store.verify()
    assert report.ok and (report.records, report.writers) == (0, 0)


def test_edited_field_is_edited(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("UPDATE records SET decision = 'allow' WHERE writer = 'B' AND seq = 3")
    assert _kinds(_verify(trail)) == [("edited", "B", 3, 6)]


def test_edited_json_field_is_edited(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute(
            "UPDATE records SET chain = '[\"agent:other\"]' WHERE writer = 'A' AND seq = 2"
        )
        conn.execute("UPDATE records SET context = 'not json' WHERE writer = 'A' AND seq = 4")
    assert _kinds(_verify(trail)) == [("edited", "A", 2, 3), ("edited", "A", 4, 7)]


def test_edited_hash_column_is_edited(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("UPDATE records SET hash = ? WHERE writer = 'A' AND seq = 2", ("f" * 64,))
    assert _kinds(_verify(trail)) == [("edited", "A", 2, 3)]


def test_edited_tail_with_recomputed_hash_is_edited(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        row = _row(conn, "A", 5)
        forged = _forge(row, seq=5, prev_hash=row["prev_hash"], decision="deny")
        conn.execute(
            "UPDATE records SET decision = ?, hash = ? WHERE id = ?",
            (forged["decision"], forged["hash"], row["id"]),
        )
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("edited", "A", 5, 9)]
    assert "writer head" in problem.detail


def test_edited_middle_with_recomputed_hash_breaks_the_next_link(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        row = _row(conn, "A", 3)
        forged = _forge(row, seq=3, prev_hash=row["prev_hash"], resource="elsewhere")
        conn.execute(
            "UPDATE records SET resource = ?, hash = ? WHERE id = ?",
            (forged["resource"], forged["hash"], row["id"]),
        )
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("inserted", "A", 4, 7)]
    assert "predecessor was rewritten" in problem.detail


def test_deleted_middle_record_is_deleted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("DELETE FROM records WHERE writer = 'A' AND seq = 3")
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("deleted", "A", 3, None)]
    assert str(problem) == "deleted: writer A seq 3: seq 3 missing before seq 4"


def test_deleted_run_of_records_is_one_problem(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("DELETE FROM records WHERE writer = 'B' AND seq IN (2, 3)")
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("deleted", "B", 2, None)]
    assert "seq 2-3 (2 records)" in problem.detail


def test_deleted_tail_record_is_deleted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("DELETE FROM records WHERE writer = 'A' AND seq = 5")
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("deleted", "A", 5, None)]
    assert "tail" in problem.detail


def test_deleting_every_record_of_a_writer_is_deleted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("DELETE FROM records WHERE writer = 'B'")
    assert _kinds(_verify(trail)) == [("deleted", "B", 1, None)]


def test_forged_record_with_duplicate_seq_is_inserted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        row = _row(conn, "A", 2)
        forged_id = _insert(
            conn,
            _forge(row, seq=2, prev_hash=row["prev_hash"], resource="forged", decision="allow"),
        )
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("inserted", "A", 2, forged_id)]
    assert "duplicate seq" in problem.detail


def test_forged_record_after_the_head_is_inserted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        tail = _row(conn, "B", 5)
        forged_id = _insert(conn, _forge(tail, seq=6, prev_hash=tail["hash"]))
    assert _kinds(_verify(trail)) == [("inserted", "B", 6, forged_id)]


def test_forged_record_of_an_unknown_writer_is_inserted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        row = _row(conn, "A", 1)
        forged_id = _insert(
            conn, _forge({**row, "writer": "mallory"}, seq=1, prev_hash=row["prev_hash"])
        )
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("inserted", "mallory", 1, forged_id)]
    assert "no head" in problem.detail


def test_swapped_records_are_reordered(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        second, third = _row(conn, "A", 2), _row(conn, "A", 3)
        for target, source in ((second["id"], third), (third["id"], second)):
            columns = [name for name in source if name != "id"]
            assignments = ", ".join(f"{name} = ?" for name in columns)
            conn.execute(
                f"UPDATE records SET {assignments} WHERE id = ?",
                [*(source[name] for name in columns), target],
            )
        stored = conn.execute("SELECT id, seq FROM records WHERE writer = 'A' ORDER BY id")
        assert stored.fetchall() == [(1, 1), (3, 3), (5, 2), (7, 4), (9, 5)]
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("reordered", "A", 2, 5)]
    assert "stored after seq 3 (record id 3)" in problem.detail


def test_link_to_a_record_other_than_the_predecessor_is_reordered(trail: Path | str,
                                                                  raw_db) -> None:
    with raw_db(trail) as conn:
        third, fifth = _row(conn, "A", 3), _row(conn, "A", 5)
        forged = _forge(fifth, seq=5, prev_hash=third["hash"])
        conn.execute(
            "UPDATE records SET prev_hash = ?, hash = ? WHERE id = ?",
            (forged["prev_hash"], forged["hash"], fifth["id"]),
        )
        conn.execute("UPDATE writers SET last_hash = ? WHERE writer = 'A'", (forged["hash"],))
    (problem,) = _verify(trail)
    assert _kinds([problem]) == [("reordered", "A", 5, 9)]
    assert "links to seq 3" in problem.detail


def test_removed_writer_head_makes_its_records_inserted(trail: Path | str, raw_db) -> None:
    with raw_db(trail) as conn:
        conn.execute("DELETE FROM writers WHERE writer = 'B'")
    problems = _verify(trail)
    assert {(p.kind, p.writer) for p in problems} == {("inserted", "B")}
    assert [p.seq for p in problems] == [1, 2, 3, 4, 5]


def test_rewriting_a_chain_suffix_and_its_head_is_not_detected(trail: Path | str, raw_db) -> None:
    """The documented limit of a keyless chain (an HMAC key is the future improvement)."""
    with raw_db(trail) as conn:
        prev = _row(conn, "A", 2)["hash"]
        for seq in (3, 4, 5):
            row = _row(conn, "A", seq)
            forged = _forge(row, seq=seq, prev_hash=prev, decision="allow", reason="ok")
            conn.execute(
                "UPDATE records SET reason = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (forged["reason"], prev, forged["hash"], row["id"]),
            )
            prev = forged["hash"]
        conn.execute("UPDATE writers SET last_hash = ? WHERE writer = 'A'", (prev,))
    assert _verify(trail) == []


def test_problem_renders_as_one_line() -> None:
    problem = Problem("edited", "host:1:ab", 3, 17, "hash does not match the record content")
    assert str(problem) == (
        "edited: writer host:1:ab seq 3 (record id 17): hash does not match the record content"
    )
