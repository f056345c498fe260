"""Benchmark: a fan-out of two branches against the same steps as a linear chain.

The same four agents and eight service calls, two shapes, in one distributed cluster (one
``infrabot serve``, two worker processes with concurrency 1, each consuming every queue), runs
alternating between the shapes so both see the same machine:

* **fan-out**: InfraBot queries latency, then ArgoCD (deployment status, tags) and the scanner
  (PR read, instance listing) run in parallel, a Celery chord; CleanupAgent joins them.
* **linear**: InfraBot → ArgoCD → scanner → CleanupAgent, one hand-off each.

Latency is the run log's ``created_at`` → ``finished_at`` of runs started one at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench._cluster import Cluster, event
from bench._report import Table, ms, ratio
from bench._timing import percentile

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
        work: Path | None = None) -> list[Table]:
    latencies: dict[str, list[float]] = {shape: [] for shape in SHAPES}
    failed = dict.fromkeys(SHAPES, 0)
    with tempfile.TemporaryDirectory(prefix="bench-fanout-", dir=work) as tmp, \
            Cluster(Path(tmp), redis_url, workflows_dir=workflows_dir(Path(tmp))) as cluster:
        cluster.start(workers)
        for index in range(warmup + runs):
            for shape in SHAPES:  # alternating: both shapes see the same machine
                run_id = cluster.orchestrator.start(event(index=index),
                                                    workflow=f"bench-{shape}")
                [done] = cluster.wait_runs([run_id], timeout=60)
                if index < warmup:
                    continue
                if done.status != "succeeded":
                    failed[shape] += 1
                latencies[shape].append(done.latency_ms)
    return [_table(latencies, failed, runs, workers)]


def _table(latencies: dict[str, list[float]], failed: dict[str, int], runs: int,
           workers: int) -> Table:
    table = Table("Fan-out vs linear: the same 4 agents and 8 service calls",
                  ["shape", "p50 latency", "p95 latency", "failed runs", "p50 vs linear"])
    linear = percentile(latencies["linear"], 50)
    names = {"fan-out": "**fan-out** (2 branches, chord, join)",
             "linear": "linear chain (3 hand-offs)"}
    for shape in SHAPES:
        p50 = percentile(latencies[shape], 50)
        table.add(names[shape], ms(p50), ms(percentile(latencies[shape], 95)), failed[shape],
                  ratio(p50, linear))
    table.notes.append(
        f"{runs} runs of each shape one at a time, alternating (after warm-up); {workers} worker "
        "processes with concurrency 1 consuming every queue; one `infrabot serve`. The fan-out "
        "mints 3 hand-offs at the fork (2 branches + the join's, naming both branch tokens) "
        "where the linear chain mints 3 one after another; the branches' 4 calls run on two "
        "workers at once. Every process shares the machine's cores.")
    return table
