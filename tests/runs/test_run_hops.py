"""Hop idempotency: ``mark_hop_done`` answers True to exactly one caller, across threads and
processes, so a redelivered hop is recognised and skipped."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

from orchestrator.runs import RunStore

from .conftest import Origin, at_once

AGENTS = [f"agent:a{n}" for n in range(40)]


def test_a_hop_is_done_once(store: RunStore, origin: Origin) -> None:
    store.create("run-1", workflow="post-deploy", event=origin)
    assert store.hop_done("run-1", "agent:infrabot") is False
    assert store.mark_hop_done("run-1", "agent:infrabot", "run-1.infrabot") is True
    assert store.hop_done("run-1", "agent:infrabot") is True
    assert store.mark_hop_done("run-1", "agent:infrabot", "run-1.infrabot") is False
    assert store.hop_done("run-1", "agent:argocd") is False
    assert store.hop_done("run-2", "agent:infrabot") is False


def test_threads_sharing_one_store_have_one_winner_per_hop(store: RunStore) -> None:
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.extend(a for a in AGENTS if store.mark_hop_done("run-1", a, "task"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == sorted(AGENTS)


def test_threads_with_their_own_connections_have_one_winner_per_hop(db: Path | str) -> None:
    wins = at_once(db, 6, lambda runs: [a for a in AGENTS
                                        if runs.mark_hop_done("run-1", a, "task")])
    assert sorted(wins) == sorted(AGENTS)


def _claim_in_process(db: Path | str, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: claim every hop, report the ones this process won."""
    with RunStore(db) as runs:
        barrier.wait(timeout=30)
        results.put([a for a in AGENTS if runs.mark_hop_done("run-1", a, "task")])


def test_two_processes_have_one_winner_per_hop(db: Path | str) -> None:
    RunStore(db).close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    processes = [ctx.Process(target=_claim_in_process, args=(db, barrier, results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    try:
        won = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
    assert all(p.exitcode == 0 for p in processes)
    for process in processes:
        process.close()
    results.close()
    results.join_thread()
    assert sorted(won[0] + won[1]) == sorted(AGENTS)
