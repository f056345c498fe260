"""Benchmark: a fan-out of two branches against the same steps as a linear chain, with the
mock services answering at once and answering as slowly as real ones.

The same four agents and eight service calls, two shapes:

* **fan-out**: InfraBot queries latency, then ArgoCD (deployment status, tags) and the scanner
  (PR read, instance listing) run in parallel, a Celery chord; CleanupAgent joins them.
* **linear**: InfraBot → ArgoCD → scanner → CleanupAgent, one hand-off each.

Two distributed clusters run side by side (each one ``infrabot serve`` and two worker processes
with concurrency 1 consuming every queue, on its own Redis database): one with the services at
0 ms (the floor: every step is CPU work), one with ``INFRABOT_SERVICE_LATENCY_MS`` set (each
service call waits that long, as a real Datadog, GitHub, AWS or PagerDuty call does). Runs go
one at a time, alternating between the four (latency, shape) pairs, so all see the same
machine. Latency is the run log's ``created_at`` → ``finished_at``; the second table takes the
fan-out's time apart from its run-log events (each exchange and call records its ``ms``).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from bench._cluster import Cluster, Finished, event, next_db
from bench._report import Table, ms, ratio
from bench._timing import percentile
from orchestrator.runs import HAND_OFF, Called, Exchanged, Run

SHIPPED = Path(__file__).resolve().parent.parent / "workflows"
_T = {"owner": "acme", "repo": "service-x"}
STEPS: dict[str, list[dict[str, Any]]] = {
    "agent:infrabot": [{"id": "latency", "action": "datadog.metrics.query", "params": {
        "from": "${window_start}", "to": "${now}",
        "query": "avg:trace.http.request.duration{service:${service},env:${environment}}"}}],
    "agent:argocd": [
        {"action": "github.deployment_status.create", "params": {
            **_T, "deployment_id": 9001, "state": "success", "environment": "${environment}",
            "description": "bench ${run_id}"}},
        {"action": "aws.ec2.create_tags", "params": {
            "Resources": ["i-0a1b2c3d4e5f60001"], "Tags": [{"Key": "bench", "Value": "x"}]}}],
    "agent:scanner": [
        {"action": "github.pull.read", "params": {**_T, "pull_number": "${pr}"}},
        {"action": "aws.ec2.describe_instances", "params": {}}],
    "agent:cleanup": [
        {"action": "aws.ec2.delete_tags", "params": {
            "Resources": ["i-0a1b2c3d4e5f60003"], "Tags": [{"Key": "deploy"}]}},
        {"action": "pagerduty.incident.resolve", "params": {
            "id": "P7X9K2Q", "resolution": "bench ${run_id}"}}],
}
SHAPES = ("fan-out", "linear")
BRANCHES, JOIN = ("agent:argocd", "agent:scanner"), "agent:cleanup"
REALISTIC_MS = 50  # a fast real API call; Datadog, GitHub, AWS answer in tens to hundreds


def _workflow(name: str, ways: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "trigger": {"environments": ["prod"], "task": name},
            "agents": [{"agent": a, "steps": s, **({"hand_off": ways[a]} if a in ways else {})}
                       for a, s in STEPS.items()]}


def workflows_dir(root: Path) -> Path:
    """The shipped directory, widened so the linear shape can pass every scope along (ArgoCD
    may hand off to the scanner and hold what it needs; the scanner hold what cleanup needs),
    and the two shapes of the same steps."""
    folder = root / "workflows"
    folder.mkdir(parents=True)
    shutil.copyfile(SHIPPED / "directory.yaml", folder / "directory.yaml")
    directory = yaml.safe_load((folder / "directory.yaml").read_text())
    directory["agents"]["agent:argocd"]["hands_off_to"].append("agent:scanner")
    directory["agents"]["agent:argocd"]["allowed_scopes"].append("urn:infra:repo:read")
    directory["agents"]["agent:scanner"]["allowed_scopes"] += [  # what it passes on, linear
        "urn:infra:infrastructure:clean", "urn:infra:incident:resolve"]
    (folder / "directory.yaml").write_text(yaml.safe_dump(directory))
    shapes: dict[str, dict[str, Any]] = {
        "fan-out": {"agent:infrabot": [{"to": ["agent:argocd", "agent:scanner"],
                                        "join": "agent:cleanup"}]},
        "linear": {"agent:infrabot": "agent:argocd", "agent:argocd": "agent:scanner",
                   "agent:scanner": "agent:cleanup"}}
    for shape, ways in shapes.items():
        name = f"bench-{shape}"
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(_workflow(name, ways),
                                                            sort_keys=False))
    return folder


def run(redis_url: str, *, runs: int = 20, warmup: int = 3, workers: int = 2,
        latency_ms: int = REALISTIC_MS, work: Path | None = None) -> list[Table]:
    """``runs`` runs of each shape at 0 ms and at ``latency_ms`` per service call; the second
    cluster uses the Redis database after ``redis_url``'s (flushed)."""
    latencies = (0, latency_ms)
    done: dict[tuple[int, str], list[Finished]] = {(ms_, s): [] for ms_ in latencies
                                                   for s in SHAPES}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-", dir=work) as tmp, \
            ExitStack() as stack:
        clusters: dict[int, Cluster] = {}
        for index, wait in enumerate(latencies):
            root = Path(tmp) / f"{wait}ms"
            clusters[wait] = stack.enter_context(Cluster(
                root, next_db(redis_url) if index else redis_url,
                workflows_dir=workflows_dir(root),
                extra_env={"INFRABOT_SERVICE_LATENCY_MS": str(wait)}))
            clusters[wait].start(workers)
        for index in range(warmup + runs):
            for wait, cluster in clusters.items():
                for shape in SHAPES:  # alternating: every pair sees the same machine
                    run_id = cluster.orchestrator.start(event(index=index),
                                                        workflow=f"bench-{shape}")
                    [finished] = cluster.wait_runs([run_id], timeout=120)
                    if index >= warmup:
                        done[(wait, shape)].append(finished)
        logs = {key: [_run(clusters[key[0]], f.run_id) for f in finished]
                for key, finished in done.items()}
    return [_table(done, latencies, runs, workers), _parts(logs, latencies)]


def _run(cluster: Cluster, run_id: str) -> Run:
    found = cluster.runs.get(run_id)
    assert found is not None
    return found


def _verdict(fan_out: float, linear: float) -> str:
    return "**met**" if fan_out < linear else "NOT met"


def _table(done: dict[tuple[int, str], list[Finished]], latencies: tuple[int, ...], runs: int,
           workers: int) -> Table:
    table = Table("Fan-out vs linear: the same 4 agents and 8 service calls, services at 0 ms "
                  f"and at {latencies[-1]} ms a call",
                  ["service latency", "shape", "p50 latency", "p95 latency", "failed runs",
                   "p50 vs linear", "fan-out faster (issue 18)"])
    names = {"fan-out": "**fan-out** (2 branches, chord, join)",
             "linear": "linear chain (3 hand-offs)"}
    for wait in latencies:
        p50 = {s: percentile([f.latency_ms for f in done[(wait, s)]], 50) for s in SHAPES}
        for shape in SHAPES:
            taken = done[(wait, shape)]
            table.add(f"{wait} ms", names[shape], ms(p50[shape]),
                      ms(percentile([f.latency_ms for f in taken], 95)),
                      sum(f.status != "succeeded" for f in taken), ratio(p50[shape], p50["linear"]),
                      _verdict(p50["fan-out"], p50["linear"]) if shape == "fan-out" else "")
    table.notes.append(
        f"{runs} runs of each shape at each service latency, one at a time, alternating over "
        f"the four (after warm-up); two clusters side by side, each one `infrabot serve` "
        f"(`INFRABOT_SERVICE_LATENCY_MS` 0 and {latencies[-1]}) and {workers} worker processes "
        "with concurrency 1 consuming every queue. The fan-out mints 3 hand-offs at the fork "
        "(2 branches + the join's, naming both branch tokens) where the linear chain mints 3 "
        "one after another; the branches' 4 calls run on two workers at once. Every process "
        "shares the machine's cores. The verdict is the measured p50s' comparison.")
    return table


def _parts(logs: dict[tuple[int, str], list[Run]], latencies: tuple[int, ...]) -> Table:
    """Where the fan-out's time goes, from its run-log events (medians over the runs)."""
    table = Table("Where a fan-out's time goes (run-log events, medians)",
                  ["service latency", "fork: 3 hand-offs minted", "2nd branch starts after",
                   "branches (first start to last end)", "a branch call, fan-out / linear",
                   "join starts after", "run"])
    for wait in latencies:
        parts = [_fan_out_parts(r) for r in logs[(wait, "fan-out")]]
        linear_call = [c for r in logs[(wait, "linear")] for c in _branch_calls(r)]
        fan_call = [c for r in logs[(wait, "fan-out")] for c in _branch_calls(r)]
        cells = [ms(percentile([p[k] for p in parts], 50)) for k in range(4)]
        table.add(f"{wait} ms", *cells[:3],
                  f"{ms(percentile(fan_call, 50))} / {ms(percentile(linear_call, 50))}",
                  cells[3], ms(percentile([r.duration_ms or 0 for r in logs[(wait, "fan-out")]],
                                          50)))
    table.notes.append(
        "From each event's time and its `ms` (an exchange's or a call's start is its time "
        "less its ms): the fork from the first hand-off exchange's start to the last hand-off; "
        "the second branch's first exchange start after the fork's last hand-off; the "
        "branches from their first exchange's start to their last call; a branch's service "
        "call as the agent timed it, in the fan-out (two at once) and the same calls in the "
        "linear chain (one at a time); the join's first exchange start after the last "
        "branch call.")
    return table


def _ms_at(run: Run, when: Any) -> float:
    return float((when - run.created_at).total_seconds() * 1000)


def _fan_out_parts(run: Run) -> tuple[float, float, float, float]:
    """(fork, second branch's start after the fork, branches, join's start after them)."""
    ops = [(e.agent, _ms_at(run, e.time) - e.detail.ms, _ms_at(run, e.time),
            isinstance(e.detail, Exchanged) and e.detail.for_.startswith(HAND_OFF))
           for e in run.events if isinstance(e.detail, Exchanged | Called)]
    mints = [(start, end) for _, start, end, hand_off in ops if hand_off]
    forked = max(end for _, end in mints)
    firsts = [min(start for agent, start, _, _ in ops if agent == b) for b in BRANCHES]
    branch_end = max(end for agent, _, end, _ in ops if agent in BRANCHES)
    joined = min(start for agent, start, _, _ in ops if agent == JOIN)
    return (forked - min(start for start, _ in mints), max(firsts) - forked,
            branch_end - min(firsts), joined - branch_end)


def _branch_calls(run: Run) -> list[float]:
    return [float(e.detail.ms) for e in run.events
            if isinstance(e.detail, Called) and e.agent in BRANCHES]
