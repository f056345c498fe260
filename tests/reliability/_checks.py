"""What must hold after any fault, read from what the system left behind:

* every run reached exactly one terminal status (one ``finished`` event);
* no side effect happened twice: per run, each mutating action acted (``allow``/``ok``) at most
  once; repeats are ``idempotent_replay`` (reads may be repeated by a retried hop);
* the audit trail has exactly the records the calls imply: every request that reached a service
  (seen on the wire by the proxy the workers go through, by its ``X-Request-Id``) has exactly
  one record there, with the status the service answered, and none other; every call the run
  log shows has its record; the tokens issued to a run (``token_exchange`` records) are the
  ones its log shows (at least those, where the broker connection was lost mid-hop), and every
  refused exchange has its refusal;
* ``infrabot audit verify`` passes on the state directory (a subprocess).
"""

from __future__ import annotations

import collections
import subprocess
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from e2e._harness import INFRABOT, POST_DEPLOY_MUTATIONS, clean_env, events_of
from e2e._processes import Distributed

from orchestrator.audit import StoredRecord
from orchestrator.catalog import CATALOG
from orchestrator.config import SERVICE_NAMES
from orchestrator.runs import Finished, Run
from reliability._faultproxy import FaultProxy
from reliability._faults import ScriptedProxy


def wait_all_terminal(d: Distributed, run_ids: Iterable[str], timeout: float) -> dict[str, Run]:
    """Every run, once all are terminal and settled (their tokens revoked, the revocation on
    record); AssertionError naming the stragglers at ``timeout``."""
    pending = list(dict.fromkeys(run_ids))
    done: dict[str, Run] = {}
    deadline = time.monotonic() + timeout
    with d.runs() as store:
        while pending:
            for run_id in list(pending):
                run = store.get(run_id)
                if run is not None and run.terminal and store.settled(run_id):
                    done[run_id] = run
                    pending.remove(run_id)
            if not pending:
                break
            if time.monotonic() > deadline:
                stuck = {r: (store.get(r).status if store.get(r) else None,
                             "settled" if store.settled(r) else "not revoked") for r in pending}
                raise AssertionError(f"runs not terminal after {timeout:g} s: {stuck}\n"
                                     f"{d.logs()}")
            time.sleep(0.1)
    return done


def by_run(records: Iterable[StoredRecord]) -> dict[str | None, list[StoredRecord]]:
    out: dict[str | None, list[StoredRecord]] = collections.defaultdict(list)
    for record in records:
        out[record.run_id].append(record)
    return out


def assert_one_terminal_each(runs: Mapping[str, Run]) -> None:
    for run in runs.values():
        assert run.terminal, run
        assert events_of(run, "finished") == [Finished(status=run.status, reason=run.reason)], \
            (run.run_id, run.status, run.reason, events_of(run, "finished"))


MUTATIONS = frozenset(a.audit_action for a in CATALOG.values() if a.mutating)


def assert_no_effect_twice(runs: Mapping[str, Run], records: list[StoredRecord]) -> None:
    """Per run, each mutating action acted at most once (reads may repeat on a retry)."""
    assert set(POST_DEPLOY_MUTATIONS) <= MUTATIONS
    grouped = by_run(records)
    for run_id in runs:
        acted = collections.Counter(r.action for r in grouped.get(run_id, [])
                                    if r.service in SERVICE_NAMES and r.decision == "allow"
                                    and r.reason == "ok" and r.action in MUTATIONS)
        twice = {a: n for a, n in acted.items() if n > 1}
        assert twice == {}, (run_id, twice)


def service_of(url: str, endpoints: Mapping[str, str]) -> str | None:
    return next((name for name in SERVICE_NAMES if url.startswith(endpoints[name] + "/")), None)


def assert_audit_matches_calls(runs: Mapping[str, Run], records: list[StoredRecord],
                               wire: FaultProxy, endpoints: Mapping[str, str], *,
                               hops_cut_off: bool = False) -> None:
    """With ``hops_cut_off`` (the broker connection was lost: Celery cancels the hops it was
    running, ``worker_cancel_long_running_tasks_on_connection_loss``), a hop may have been
    stopped between a token's issuance and its run-log event: the log then shows fewer
    exchanges than the audit holds, never more."""
    grouped = by_run(records)
    seen = [s for s in wire.seen if not s.faked and s.request_id]
    for run_id, run in runs.items():
        mine = grouped.get(run_id, [])
        services = [r for r in mine if r.service in SERVICE_NAMES]
        # the wire and the audit: one record per request that reached a service
        reached = collections.Counter(
            (service_of(s.url, endpoints), s.request_id, s.status) for s in seen
            if s.request_id and s.request_id.startswith(f"{run_id}."))
        audited = collections.Counter((r.service, r.request_id, r.status) for r in services)
        assert audited == reached, (run_id, audited - reached, reached - audited)
        # the run log and the audit: every call it shows is on record
        called = collections.Counter(
            (e.service, e.action, "allow", "idempotent_replay" if e.replayed else "ok")
            for e in events_of(run, "called"))
        called += collections.Counter((e.service, e.action, "deny", e.reason)
                                      for e in events_of(run, "call_denied"))
        on_record = collections.Counter((r.service, r.action, r.decision, r.reason)
                                        for r in services)
        assert called - on_record == collections.Counter(), (run_id, called - on_record)
        # exchanges: issued and refused, as the run log tells them
        exchanges = [r for r in mine if r.service == "authserver"
                     and r.action == "token_exchange"]
        issued = sum(r.decision == "allow" for r in exchanges)
        logged = len(events_of(run, "exchanged"))
        assert logged <= issued if hops_cut_off else logged == issued, (run_id, logged, issued)
        refused = collections.Counter(r.reason for r in exchanges
                                      if r.decision == "deny" and (r.status or 0) < 500)
        assert refused == collections.Counter(e.reason for e in
                                              events_of(run, "exchange_denied")), run_id
        roots = [r for r in mine if r.action == "root_grant" and r.decision == "allow"]
        assert len(roots) == len(events_of(run, "root_granted")), run_id


def assert_audit_verifies(state_dir: Path, within: float = 15.0, *,
                          running: Collection[int] | None = None) -> str:
    """``infrabot audit verify --state-dir D`` in its own process exits 0 (intact, and every
    record anchored by a signed checkpoint) once the running writer's time-based checkpoint has
    covered its last records (exit 3 until then, for at most ``within`` s); its output.

    ``running``: the pids of the processes still running, given when a writer was killed (a
    SIGKILLed ``serve``): a killed writer keeps its last records unanchored for good, as
    docs/audit.md says, so exit 3 is the answer once every unanchored writer (``host:pid:...``)
    is one of a process no longer running."""
    deadline = time.monotonic() + within
    while True:
        done = subprocess.run([str(INFRABOT), "audit", "verify", "--state-dir", str(state_dir)],
                              env=clean_env(), capture_output=True, text=True, timeout=60,
                              check=False)
        unanchored = [line for line in done.stdout.splitlines()
                      if line.startswith("writer ") and "unanchored" in line]
        if done.returncode != 3 or time.monotonic() > deadline:
            break
        if running is not None and all(_writer_pid(line) not in running for line in unanchored):
            return done.stdout + done.stderr  # only killed writers: they cannot sign any more
        time.sleep(0.5)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout + done.stderr


def _writer_pid(line: str) -> int | None:
    """The pid in ``writer host:pid:random: ...`` (a default writer name), else None."""
    parts = line.removeprefix("writer ").split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


def assert_after_fault(d: Distributed, runs: Mapping[str, Run], wire: FaultProxy, *,
                       hops_cut_off: bool = False, writer_killed: bool = False) -> None:
    """The four invariants of the module docstring (see :func:`assert_audit_matches_calls`
    for ``hops_cut_off``; ``writer_killed``: a ``serve`` was SIGKILLed, whose unanchored
    records stay so, see :func:`assert_audit_verifies`)."""
    if isinstance(wire, ScriptedProxy):
        wire.settle()  # a held answer is recorded when the proxy gives up holding it
    assert_one_terminal_each(runs)
    with d.audit() as audit:
        records = audit.query()
        assert audit.verify().ok
    assert_no_effect_twice(runs, records)
    assert_audit_matches_calls(runs, records, wire, d.endpoints, hops_cut_off=hops_cut_off)
    running = {p.pid for p in d.procs if p.alive()} if writer_killed else None
    assert_audit_verifies(d.state_dir, running=running)
