"""Chaos (issue 20): ``infrabot serve`` + two ``infrabot worker -c 1`` under a bounded load of
signed CI events, with faults injected at random (seeded) moments, for each broker.

One phase per fault kind, each with its own load (sam deploys service-x to prod, every event
good, ``rate`` per second for ``spacing`` seconds per fault, sent by the product's own load
sender, ``orchestrator.ci._load.run_load``: retries of a send on connection errors and
502/503/504, each event counted once). Each fault comes at a random moment of the sending window
(seeded), once a run of the phase is in flight (at most ``IN_FLIGHT_WAIT`` later), so that
faults hit work rather than an idle system. That wait ends the moment a run is created, just as
its first hop is being handed to a worker, so worker kills land in Redis's BRPOP window (a
message popped but not yet recorded as unacknowledged) more often than uniform moments would. Before each phase one probe run must succeed, so a
phase does not inherit the previous one's recovery. The faults:

* ``worker_kill``: SIGKILL to a random worker's whole process group (main process and pool),
  then a new worker started;
* ``serve_restart``: SIGKILL to ``serve``, started again on the same ports and state directory;
* ``broker_restart``: SIGKILL to the broker (a ``redis-server`` with an append-only file synced
  on every write, or a RabbitMQ node of the benchmark's own), started again on the same data;
* ``registry_restart``: SIGKILL to the revocation registry's ``redis-server`` (unpersisted, as
  the registry must run), started again empty.

Every dependency is the benchmark's own process on its own port (``bench/_servers.py``); the
machine's Redis and RabbitMQ are never touched. Per phase it reports the events sent and
accepted, the runs terminal (and how: succeeded, failed by reason), the runs lost (not terminal
when the phase's wait ends: its last fault + the recovery goal + ``SETTLE``), the effects
duplicated (from the services' audit: per run, a mutating action allowed and performed, ``ok``,
more than once), recovery (per fault: from the kill to the moment every run in flight at the
kill was terminal; p50 and max over the faults that hit a run in flight) and the processes that
died without being killed (each restarted so the phase can go on). The raw figures go to
``bench/raw/chaos-<time>.json`` and every process's log to ``bench/raw/chaos-<time>-logs/``
(git-ignored).
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._cluster import Cluster
from bench._procs import REPO, Proc
from bench._report import Table
from bench._servers import RabbitNode, RedisServer, Server
from orchestrator.audit import AuditStore
from orchestrator.catalog import CATALOG
from orchestrator.ci._load import EventSpec, LoadReport, run_load
from orchestrator.config import SERVICE_NAMES
from orchestrator.runs._schema import parse_time

KINDS = ("worker_kill", "serve_restart", "broker_restart", "registry_restart")
BROKERS = ("redis", "rabbitmq")
VISIBILITY_SECONDS = 41  # the Redis broker's visibility timeout: the least the default
# hop time limit (30 s) allows
GOAL_SECONDS = {"rabbitmq": 10.0, "redis": VISIBILITY_SECONDS + 15.0}
SETTLE = 30.0  # beyond the goal, before a run still unfinished counts as lost
IN_FLIGHT_WAIT = 3.0  # at a fault's moment, wait at most this long for a run in flight
SECRET = "chaos-bench-webhook-secret-0123456789"
MUTATIONS = frozenset(a.audit_action for a in CATALOG.values() if a.mutating)
RAW = Path(__file__).resolve().parent / "raw"


@dataclass
class Fault:
    kind: str
    at: float  # epoch seconds of the kill
    target: str
    back_after_s: float  # kill → the process answering again
    affected: list[str] = field(default_factory=list)  # the phase's runs in flight at the kill
    recovery_s: float | None = None  # kill → every affected run terminal; None: one never was
    overlapped: bool = False  # the next fault came before this one's runs were all terminal


@dataclass
class RunRow:
    run_id: str
    status: str
    reason: str
    created: float
    finished: float | None


@dataclass
class Phase:
    broker: str
    kind: str
    events: int
    rate: float
    faults: list[Fault] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    runs: list[RunRow] = field(default_factory=list)
    duplicated: dict[str, dict[str, int]] = field(default_factory=dict)
    died: list[dict[str, Any]] = field(default_factory=list)
    probe_s: float | None = None  # one run before the phase: the system is serving again

    @property
    def lost(self) -> list[str]:
        return [r.run_id for r in self.runs if r.finished is None]

    def recoveries(self) -> list[float | None]:
        return [f.recovery_s for f in self.faults if f.affected]


@dataclass
class System:
    """The cluster under test and its two dependencies, with the faults it can suffer."""

    broker_kind: str
    root: Path
    rng: random.Random
    registry: RedisServer = field(init=False)
    broker: Server = field(init=False)
    cluster: Cluster = field(init=False)
    killed: set[int] = field(default_factory=set)
    died: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry = RedisServer("registry", self.root / "registry")
        self.broker = (RedisServer("broker", self.root / "broker", persist=True)
                       if self.broker_kind == "redis" else RabbitNode("rabbitmq",
                                                                      self.root / "rabbitmq"))
        self.cluster = Cluster(self.root / "cluster", self.registry.url,
                               extra_env={"INFRABOT_WEBHOOK_SECRET": SECRET,
                                          "INFRABOT_VISIBILITY_TIMEOUT_SECONDS":
                                              str(VISIBILITY_SECONDS)})

    def start(self) -> None:
        self.registry.start()
        self.broker.start()
        self.cluster.broker_url = self.broker.url
        self.cluster.start(workers=2)

    def close(self) -> None:
        self.cluster.close()
        for server in (self.broker, self.registry):
            server.kill()

    # -- faults ----------------------------------------------------------------------------

    def inject(self, kind: str) -> Fault:
        faults: dict[str, Callable[[], tuple[float, str]]] = {
            "worker_kill": self._kill_worker, "serve_restart": self._restart_serve,
            "broker_restart": lambda: self._restart(self.broker),
            "registry_restart": lambda: self._restart(self.registry)}
        at, target = faults[kind]()
        return Fault(kind, at, target, round(time.time() - at, 2))

    def _kill_group(self, proc: Proc) -> float:
        self.killed.add(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the process and its pool
        at = time.time()
        proc.popen.wait(10)
        return at

    def _kill_worker(self) -> tuple[float, str]:
        proc = self.rng.choice(self.cluster.workers)
        at = self._kill_group(proc)
        self.cluster.workers.remove(proc)
        self.cluster.start_workers(1)
        return at, f"worker {proc.pid}"

    def _restart_serve(self) -> tuple[float, str]:
        assert self.cluster.serve_proc is not None
        pid = self.cluster.serve_proc.pid
        at = self._kill_group(self.cluster.serve_proc)
        self.cluster.serve(same_ports=True)
        return at, f"serve {pid}"

    def _restart(self, server: Server) -> tuple[float, str]:
        assert server.popen is not None
        pid = server.popen.pid
        server.kill()
        at = time.time()
        server.start()
        return at, f"{server.name} {pid}"

    # -- processes that died on their own ---------------------------------------------------

    def check(self) -> None:
        """Record and restart any process that died without being killed here."""
        procs = [p for p in (self.cluster.serve_proc, *self.cluster.workers) if p is not None]
        for proc in procs:
            if proc.alive() or proc.pid in self.killed:
                continue
            self.died.append({"process": proc.name, "pid": proc.pid, "at": time.time(),
                              "exit": proc.popen.returncode, "log": proc.output()[-3000:]})
            self.killed.add(proc.pid)
            if proc is self.cluster.serve_proc:
                self.cluster.serve(same_ports=True)
            else:
                self.cluster.workers.remove(proc)
                self.cluster.start_workers(1)
        for server in (self.broker, self.registry):
            if not server.alive():
                self.died.append({"process": server.name, "at": time.time(),
                                  "exit": server.popen.returncode if server.popen else None})
                server.start()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check()
            time.sleep(min(0.5, left))


# -- one phase ------------------------------------------------------------------------------

def _specs(rng: random.Random, count: int) -> list[EventSpec]:
    return [EventSpec("sam", "service-x", "prod", "ci_pipeline", f"{rng.getrandbits(28):07x}")
            for _ in range(count)]


def _probe(system: System, timeout: float = 120.0) -> float | None:
    """One run, sent and waited for before a phase begins, so that a phase does not inherit
    the previous one's recovery (workers still reconnecting); its seconds, None if it failed."""
    began = time.monotonic()
    report = run_load(system.cluster.endpoints["webhooks"], SECRET.encode(),
                      system.cluster.state_dir / "runs.sqlite3", _specs(system.rng, 1),
                      rate=1.0, timeout=timeout)
    ok = report.statuses.get("succeeded") == 1
    return round(time.monotonic() - began, 2) if ok else None


def _read_runs(runs_db: Path, run_ids: list[str]) -> dict[str, RunRow]:
    if not run_ids:
        return {}
    with sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(
            "SELECT run_id, status, reason, created_at, finished_at FROM runs WHERE run_id IN "
            f"({', '.join('?' * len(run_ids))})", run_ids).fetchall()
    return {r[0]: RunRow(r[0], r[1], r[2] or "", parse_time(r[3]).timestamp(),
                         parse_time(r[4]).timestamp() if r[4] else None) for r in rows}


def _until_in_flight(runs_db: Path, since: float, timeout: float) -> bool:
    """Wait (at most ``timeout``) until a run created after ``since`` is in flight."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True, timeout=10) as conn:
        while True:
            rows = conn.execute("SELECT created_at FROM runs WHERE finished_at IS NULL")
            if any(parse_time(c).timestamp() >= since for (c,) in rows.fetchall()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def _duplicated(audit_db: Path, run_ids: set[str]) -> dict[str, dict[str, int]]:
    """Per run, the mutating actions a service performed (allowed, ``ok``) more than once."""
    with AuditStore(audit_db, read_only=True) as audit:
        records = audit.query()
    acted = collections.Counter((r.run_id, r.action) for r in records
                                if r.run_id in run_ids and r.service in SERVICE_NAMES
                                and r.decision == "allow" and r.reason == "ok"
                                and r.action in MUTATIONS)
    out: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (run_id, action), count in acted.items():
        if count > 1:
            out[str(run_id)][action] = count
    return dict(out)


def _attribute(faults: list[Fault], runs: list[RunRow]) -> None:
    """Each fault's runs: those in flight at its kill and not already hit by an earlier fault
    that they never recovered from (a run lost at the first fault would otherwise count as
    never recovered at every later one); its recovery, and whether a later fault came before
    it ended (``overlapped``: its recovery then includes that fault's)."""
    stuck: set[str] = set()
    for index, fault in enumerate(faults):
        hit = [r for r in runs if r.created <= fault.at and r.run_id not in stuck
               and (r.finished is None or r.finished > fault.at)]
        fault.affected = [r.run_id for r in hit]
        ends = [r.finished for r in hit]
        if hit and all(e is not None for e in ends):
            end = max(e for e in ends if e is not None)
            fault.recovery_s = round(end - fault.at, 2)
            fault.overlapped = any(f.at < end for f in faults[index + 1:])
        stuck.update(r.run_id for r in hit if r.finished is None)


def _phase(system: System, kind: str, faults: int, rate: float, spacing: float) -> Phase:
    window = faults * spacing
    events = max(1, round(window * rate))
    phase = Phase(system.broker_kind, kind, events, rate)
    rng = system.rng
    offsets = sorted(rng.uniform(spacing / 4, window - spacing / 4) for _ in range(faults))
    cluster = system.cluster
    runs_db = cluster.state_dir / "runs.sqlite3"
    loads: list[LoadReport] = []
    errors: list[str] = []

    def send() -> None:
        try:
            loads.append(run_load(cluster.endpoints["webhooks"], SECRET.encode(), runs_db,
                                  _specs(rng, events), rate=events / window,
                                  timeout=window + 20))
        except Exception as exc:  # noqa: BLE001 - reported in the phase, never hidden
            errors.append(repr(exc))

    system.died = phase.died
    phase.probe_s = _probe(system)
    sender = threading.Thread(target=send, name=f"chaos-load-{kind}")
    began = time.monotonic()
    sender.start()
    since = time.time()
    for offset in offsets:
        system.sleep(began + offset - time.monotonic())
        _until_in_flight(runs_db, since, IN_FLIGHT_WAIT)
        phase.faults.append(system.inject(kind))
    while sender.is_alive():
        system.sleep(0.5)
    sender.join()
    load = loads[0] if loads else LoadReport()
    phase.load = {"sent": load.sent, "accepted": load.accepted, "refused": dict(load.refused),
                  "not_accepted": dict(load.lost), "send_retries": load.retries,
                  "errors": errors}
    run_ids = list(load.run_ids)
    wait_until = max(f.at for f in phase.faults) + GOAL_SECONDS[system.broker_kind] + SETTLE
    rows = _read_runs(runs_db, run_ids)
    while any(r.finished is None for r in rows.values()) and time.time() < wait_until:
        system.sleep(1.0)
        rows = _read_runs(runs_db, run_ids)
    phase.runs = [rows[r] for r in run_ids if r in rows]
    _attribute(phase.faults, phase.runs)
    phase.duplicated = _duplicated(cluster.settings.audit_db, set(run_ids))
    system.check()
    return phase


# -- the report -----------------------------------------------------------------------------

def _seconds(values: list[float | None]) -> tuple[str, str]:
    if not values:
        return "n/a", "n/a"
    finite = [v for v in values if v is not None]
    p50 = f"{statistics.median(finite):.1f} s" if finite else "n/a"
    worst = (f"{max(finite):.1f} s" if len(finite) == len(values)
             else f"> bound ({len(values) - len(finite)} never)")
    return p50, worst


def _code(reason: str) -> str:
    """A run's reason, short: the code in its last parentheses, if any."""
    return reason.rsplit("(", 1)[-1].rstrip(")") if reason.endswith(")") else reason


def _row(table: Table, phase: Phase) -> None:
    statuses = collections.Counter(r.status if r.finished is not None else "lost"
                                   for r in phase.runs)
    failed = collections.Counter(f"{r.status} ({_code(r.reason)})" for r in phase.runs
                                 if r.finished is not None and r.status != "succeeded")
    p50, worst = _seconds(phase.recoveries())
    goal = GOAL_SECONDS[phase.broker]
    back = [f.back_after_s for f in phase.faults]
    table.add(phase.broker, phase.kind, len(phase.faults),
              f"{sum(1 for f in phase.faults if f.affected)}", phase.load.get("sent", 0),
              phase.load.get("accepted", 0), len(phase.runs) - len(phase.lost),
              statuses.get("succeeded", 0),
              ", ".join(f"{n} {r}" for r, n in failed.most_common()) or "0",
              len(phase.lost), sum(sum(v.values()) - len(v) for v in phase.duplicated.values()),
              p50, worst, sum(f.overlapped for f in phase.faults), f"≤ {goal:.0f} s",
              f"{statistics.median(back):.1f} / {max(back):.1f} s", len(phase.died))


def _keep_logs(root: Path, folder: Path) -> None:
    """Every process's log (serve, workers, the broker's and the registry's) under ``folder``,
    for the post-mortem of what was lost or done twice (the state directory is not kept)."""
    for log in root.rglob("*.log"):
        target = folder / log.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, target)


def _write_raw(phases: list[Phase], params: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"params": params, "phases": [asdict(p) for p in phases]},
                               indent=1, default=str))
    return path


def run(*, brokers: tuple[str, ...] = BROKERS, counts: dict[str, int] | None = None,
        rate: float = 2.0, spacing: float = 5.0, seed: int = 20, work: Path | None = None,
        raw: Path = RAW) -> list[Table]:
    counts = counts or {"worker_kill": 20, "serve_restart": 5, "broker_restart": 5,
                        "registry_restart": 5}
    params = {"brokers": brokers, "counts": counts, "rate_per_s": rate, "spacing_s": spacing,
              "seed": seed, "visibility_timeout_s": VISIBILITY_SECONDS}
    table = Table("chaos: faults under load, per broker and fault kind",
                  ["broker", "fault", "injected", "hit runs in flight", "sent", "accepted",
                   "terminal", "succeeded", "not succeeded (reason)", "lost", "effects duplicated",
                   "recovery p50", "recovery max", "overlapped", "goal",
                   "restart took p50 / max", "died on their own"])
    phases: list[Phase] = []
    stem = raw / f"chaos-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    with tempfile.TemporaryDirectory(prefix="bench-chaos-", dir=work) as tmp:
        for broker in brokers:
            system = System(broker, Path(tmp) / broker, random.Random(f"{seed}-{broker}"))
            try:
                system.start()
                for kind in KINDS:
                    if counts.get(kind, 0) <= 0:
                        continue
                    phase = _phase(system, kind, counts[kind], rate, spacing)
                    phases.append(phase)
                    _row(table, phase)
            finally:
                system.close()
                _keep_logs(system.root, stem.with_name(f"{stem.name}-logs") / broker)
    table.notes += [
        (f"seed {seed}; each phase sends {rate:g} events/s for {spacing:g} s per fault (sam "
        "deploys service-x to prod; `run_load`, 4 tries a send); each fault at a random moment "
        f"of that window, once a run is in flight (waiting at most {IN_FLIGHT_WAIT:g} s)"),
        (f"Redis broker: visibility timeout {VISIBILITY_SECONDS} s, append-only file "
        "(`appendfsync always`); registry: its own unpersisted redis-server; RabbitMQ: a node of "
        "the benchmark's own (on spare ports)"),
        (f"lost: accepted, not terminal at last fault + goal + {SETTLE:.0f} s; recovery: kill → "
        "every run in flight at the kill terminal (runs already stuck since an earlier fault "
        "count for that one only); overlapped: faults whose recovery includes the next fault; "
        "restart took: kill → the process (new worker, serve, broker, registry) answering"),
        ("effects duplicated: per run, allowed `ok` calls of a mutating action beyond the first "
        "(services' audit)")]
    written = _write_raw(phases, params, stem.with_suffix(".json"))
    shown = written.relative_to(REPO) if written.is_relative_to(REPO) else written
    table.notes.append(f"raw figures: {shown}, every process's log: {shown.stem}-logs/")
    return [table]
