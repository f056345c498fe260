"""A crash loses no acknowledged audit record: a process appending from many threads at once (so
group commit batches them) is killed with SIGKILL mid-stream, batches in flight; every record
whose ``append`` had returned is in the store afterwards, once, and the chain verifies. The
writer reports the size of every batch it sends, so the test knows batches of several records
(one transaction, the records and head moves each one prepared statement) were written and
acknowledged before the kill."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from orchestrator.audit import AuditStore

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8
ACKED_BEFORE_KILL = 400

# The writer: THREADS threads append records with unique request ids for as long as it lives,
# printing each id once its append has returned (acknowledged: committed), and "batch N" once a
# transaction of N records has committed.
_WRITER = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path
from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.audit._append import ChainWriter

where, threads = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
send = ChainWriter._send

def reporting_send(self, contents, *args):
    stored = send(self, contents, *args)
    with lock:
        sys.stdout.write(f"batch {len(contents)}\\n")
    return stored

ChainWriter._send = reporting_send
store = AuditStore(where if where.startswith("postgresql") else Path(where), writer="crash-test")
print("ready", flush=True)

def append(thread):
    n = 0
    while True:
        n += 1
        rid = f"t{thread}-{n}"
        store.append(AuditRecord(
            time=datetime.now(UTC), service="aws", action="tags:delete", resource="ec2:i-1",
            decision="allow", reason="ok", performed_by="agent:cleanup", on_behalf_of="user:sam",
            chain=("agent:cleanup", "user:sam"), scopes=("urn:infra:infrastructure:clean",),
            context={"trigger": "ci_pipeline", "environment": "prod", "repository": "acme/x",
                     "commit": "abc", "run_id": "run-crash"},
            jti=f"jti-{rid}-crash", run_id="run-crash", request_id=rid, status=200))
        with lock:
            sys.stdout.write(rid + "\\n")
            sys.stdout.flush()

for t in range(threads):
    threading.Thread(target=append, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def test_records_acknowledged_before_a_sigkill_are_all_kept(target: Path | str) -> None:
    AuditStore(target).close()  # the schema, before the writer starts
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lines: list[str] = []
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(THREADS)],
                          stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None
            output: queue.Queue[str] = queue.Queue()  # a writer that stops writing fails,
            reader = threading.Thread(  # never hangs, the test
                target=lambda: [output.put(line) for line in proc.stdout or ()], daemon=True)
            reader.start()
            assert output.get(timeout=30).strip() == "ready"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                    len(_acked(lines)) >= ACKED_BEFORE_KILL and _most_batched(lines) > 1):
                try:
                    lines.append(output.get(timeout=max(0.0, deadline - time.monotonic()))
                                 .strip())
                except queue.Empty:
                    break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            reader.join(10)
            while not output.empty():
                lines.append(output.get().strip())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    lines = [line for line in lines if line]
    acked = _acked(lines)
    assert len(acked) >= ACKED_BEFORE_KILL, f"the writer acknowledged only {len(acked)}"
    assert _most_batched(lines) > 1, "no batch of several records was written"
    assert proc.returncode == -signal.SIGKILL

    with AuditStore(target, writer="reader") as store:
        stored = [r.request_id for r in store.query(run_id="run-crash", limit=None)]
        report = store.verify()
    assert report.ok, report
    assert len(stored) == len(set(stored))  # nothing twice
    assert set(acked) <= set(stored)  # nothing acknowledged is lost


def _acked(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("batch ")]


def _most_batched(lines: list[str]) -> int:
    return max((int(line.split()[1]) for line in lines if line.startswith("batch ")), default=0)
