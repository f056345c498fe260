"""A run log from before deliveries named their run (no ``delivery_claims`` table) gains the
table when it is opened, keeps its record of deliveries, and a delivery received before still
counts as answered: its redelivery is a replay, never taken over."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.ci import build_deployment_event
from orchestrator.identity import Directory, MemoryRevocationStore
from orchestrator.runs import RunStore

from .conftest import SECRET, running_webhook


def test_an_older_run_log_gains_the_claims_and_its_deliveries_stay_answered(
        tmp_path: Path, directory: Directory) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    with running_webhook(tmp_path, directory) as before:
        assert before.post(headers, body).status_code == 202
    db = tmp_path / "runs.sqlite3"
    with sqlite3.connect(db) as conn:  # the file as the version before this one left it
        conn.execute("DROP TABLE delivery_claims")
    conn.close()
    with running_webhook(tmp_path, directory, replay=MemoryRevocationStore()) as after:
        replay = after.post(headers, body)  # a replay cache that remembers nothing
        assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")
        assert after.starter.events == []
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"deliveries", "delivery_claims"} <= tables


def test_a_claim_names_its_run_until_it_is_answered(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite3") as runs:
        assert runs.claim_delivery("sha256:ab", ttl=60, run_id="run-1")
        claim = runs.delivery_claim("sha256:ab")
        assert claim is not None and (claim.run_id, claim.state) == ("run-1", "starting")
        assert not runs.claim_delivery("sha256:ab", ttl=60, run_id="run-2")  # not relinked
        runs.answer_delivery(["sha256:ab"], "run-1")
        claim = runs.delivery_claim("sha256:ab")
        assert claim is not None and (claim.run_id, claim.state) == ("run-1", "answered")
        runs.release_delivery("sha256:ab", "run-2")  # another run's claim: kept
        assert runs.delivery_claim("sha256:ab") is not None
        runs.release_delivery("sha256:ab", "run-1")
        assert runs.delivery_claim("sha256:ab") is None
        assert runs.claim_delivery("sha256:ab", ttl=60)
