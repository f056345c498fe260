"""Benchmark 6: resident memory of the long-running processes, and whether it stays flat.

A load run of delegated post-deploy workflows against ``infrabot serve`` (the auth server and
the four services in one process) and two ``infrabot worker -c 1`` processes on Redis. After
each checkpoint (e.g. 100, 500, 1000 finished workflows) it reads ``VmRSS`` of every process
from ``/proc``; at the end ``VmHWM`` (the peak). A prefork worker is a parent that consumes the
broker and a pool child that runs the hops: both are reported. Growth per 1000 runs is the
least-squares slope of RSS over the checkpoints. Then ``infrabot demo`` (embedded, one
process) on its own, its peak read from ``/proc`` while it runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench._cluster import Cluster
from bench._procs import BIN, Processes, children_of, clean_env, proc_status
from bench._report import Table, mib
from bench._timing import slope

GOAL_MIB = 150
CHECKPOINTS = (100, 500, 1000)
BATCH = 25


def _processes(cluster: Cluster) -> dict[str, int]:
    assert cluster.serve_proc is not None
    pids = {"serve (auth + 4 services)": cluster.serve_proc.pid}
    for index, worker in enumerate(cluster.workers, 1):
        pids[f"worker {index} parent"] = worker.pid
        for child in children_of(worker.pid):
            pids[f"worker {index} pool child"] = child
    return pids


def load(cluster: Cluster, checkpoints: tuple[int, ...], *, timeout: float
         ) -> tuple[dict[int, dict[str, int]], int, float]:
    """Run workflows in batches until each checkpoint; RSS by process at each one."""
    samples: dict[int, dict[str, int]] = {}
    done = failed = 0
    started = time.monotonic()
    deadline = started + timeout
    for checkpoint in checkpoints:
        while done < checkpoint:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load run stopped at {done} workflows after {timeout:g} s")
            batch = min(BATCH, checkpoint - done)
            ids = [cluster.start_run("delegated", done + i) for i in range(batch)]
            runs = cluster.wait_runs(ids, timeout=max(10.0, deadline - time.monotonic()))
            failed += sum(r.status != "succeeded" for r in runs)
            done += batch
        samples[checkpoint] = {name: proc_status(pid).get("VmRSS", 0)
                               for name, pid in _processes(cluster).items()}
    return samples, failed, time.monotonic() - started


def demo_peak(root: Path, timeout: float = 120.0) -> tuple[int, int]:
    """``infrabot demo --json`` in its own state dir: (peak RSS by polling VmHWM, exit code)."""
    with Processes(root / "logs") as procs:
        proc = procs.start("demo", [str(BIN / "infrabot"), "demo", "--json", "--state-dir",
                                    str(root / "demo-state")], clean_env(PYTHONUNBUFFERED="1"))
        peak = 0
        deadline = time.monotonic() + timeout
        while proc.alive() and time.monotonic() < deadline:
            peak = max(peak, proc_status(proc.pid).get("VmHWM", 0))
            time.sleep(0.02)
        if proc.alive():
            raise TimeoutError(f"infrabot demo still running after {timeout:g} s")
        return peak, proc.popen.returncode


def run(redis_url: str, *, checkpoints: tuple[int, ...] = CHECKPOINTS, workers: int = 2,
        timeout: float = 600.0, demo: bool = True, work: Path | None = None) -> list[Table]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=work) as tmp:
        root = Path(tmp)
        with Cluster(root / "cluster", redis_url) as cluster:
            cluster.start(workers)
            samples, failed, seconds = load(cluster, checkpoints, timeout=timeout)
            pids = _processes(cluster)
            peaks = {name: proc_status(pid).get("VmHWM", 0) for name, pid in pids.items()}
            pss = {name: proc_status(pid).get("Pss", 0) for name, pid in pids.items()}
        demo_hwm, demo_rc = demo_peak(root) if demo else (0, 0)
    return [_table(samples, peaks, pss, failed, seconds, demo_hwm, demo_rc)]


def _table(samples: dict[int, dict[str, int]], peaks: dict[str, int], pss: dict[str, int],
           failed: int, seconds: float, demo_hwm: int, demo_rc: int) -> Table:
    marks = sorted(samples)
    table = Table("Memory: peak and flatness under a load run of delegated workflows",
                  ["process", *(f"RSS @{m}" for m in marks), "growth / 1000 runs",
                   "peak (VmHWM)", "PSS at end", f"< {GOAL_MIB} MiB"])
    for name, peak in peaks.items():
        values = [samples[m].get(name, 0) for m in marks]
        growth = slope(marks, values) * 1000 if len(marks) > 1 else 0.0
        table.add(name, *(mib(v) for v in values), f"{growth / 2**20:+.1f} MiB",
                  mib(peak), mib(pss[name]), "yes" if peak < GOAL_MIB * 2**20 else "**no**")
    if demo_hwm:
        table.add("`infrabot demo` (one process)", *("-" for _ in marks), "-", mib(demo_hwm), "-",
                  ("yes" if demo_hwm < GOAL_MIB * 2**20 else "**no**")
                  + ("" if demo_rc == 0 else f" (exit {demo_rc})"))
    table.notes += [
        (f"{marks[-1]} delegated workflows in batches of {BATCH} ({seconds:.0f} s, "
        f"{failed} not succeeded); RSS read after each checkpoint, VmHWM at the end. Growth: "
        "least-squares slope of RSS over the checkpoints."),
        ("A pool child is forked from its parent and shares its pages, so their RSS overlap; "
        "PSS (from /proc/PID/smaps_rollup) divides shared pages among the processes sharing "
        "them."),
        f"Goal: each long-running process under {GOAL_MIB} MiB and flat.",
    ]
    return table
