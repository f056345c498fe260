"""Benchmark: a fan-out of two branches against the same steps as a linear chain, with the
mock services answering at once and answering as slowly as real ones.

The same four agents and eight service calls, two shapes:

* **fan-out**: InfraBot queries latency, then ArgoCD (deployment status, tags) and the scanner
  (PR read, instance listing) run in parallel; CleanupAgent joins them (published by the
  branch that ends last).
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
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from itertools import pairwise
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
NOISE = 0.05  # p50s closer than this are a tie: the 0 ms ratio moved 0.82x-1.03x with the load


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
    """Met when the fan-out's p50 is below the chain's by more than a shared machine's noise."""
    if fan_out < linear * (1 - NOISE):
        return "**met**"
    return f"not shown (within {NOISE:.0%})" if fan_out < linear * (1 + NOISE) else "NOT met"


def _table(done: dict[tuple[int, str], list[Finished]], latencies: tuple[int, ...], runs: int,
           workers: int) -> Table:
    table = Table("Fan-out vs linear: the same 4 agents and 8 service calls, services at 0 ms "
                  f"and at {latencies[-1]} ms a call",
                  ["service latency", "shape", "p50 latency", "p95 latency", "failed runs",
                   "p50 vs linear", "fan-out faster (issue 18)"])
    names = {"fan-out": "**fan-out** (2 branches, join)",
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
        "shares the machine's cores. The verdict compares the measured p50s: met when the "
        f"fan-out's is more than {NOISE:.0%} below the chain's, not shown within {NOISE:.0%}.")
    return table


def _parts(logs: dict[tuple[int, str], list[Run]], latencies: tuple[int, ...]) -> Table:
    """Where the fan-out's time goes, beside the same parts of the linear chain, from the
    run-log events (medians over the runs)."""
    table = Table("Where the time goes: fan-out / linear (run-log events, medians)",
                  ["service latency", "3 hand-offs minted",
                   "1st / 2nd branch starts after the fork",
                   "ArgoCD's and the scanner's steps", "a branch's call",
                   "next agent starts after"])
    for wait in latencies:
        fan = [_Ops(r, fan_out=True) for r in logs[(wait, "fan-out")]]
        line = [_Ops(r, fan_out=False) for r in logs[(wait, "linear")]]

        def both(part: Any, fan: list[_Ops] = fan, line: list[_Ops] = line) -> str:
            return f"{ms(_median(fan, part))} / {ms(_median(line, part))}"

        table.add(f"{wait} ms", both(_Ops.minted),
                  f"{ms(percentile([o.branch_starts(min) for o in fan], 50))} / "
                  f"{ms(percentile([o.branch_starts(max) for o in fan], 50))}",
                  both(_Ops.branches), both(_Ops.branch_call), both(_Ops.next_starts))
    table.notes.append(
        "From each event's time and its `ms` (an exchange's or a call's start is its time less "
        "its ms). Hand-offs: the fan-out's 3 at the fork, first start to last end; the linear "
        "chain's 3, one per hop, summed. Each branch's first exchange after the fork's last "
        "hand-off: the first branch's on the other worker (it waits until the fork has "
        "recorded the fan-out sent), the second's once the forking worker has ended its hop. "
        "ArgoCD's and the scanner's steps: from the first one's start to the last one's end, "
        "at once in the fan-out, one after the other in the linear chain. A branch's call: one "
        "service call as the agent timed it. Next agent: from a hop's last exchange or call to "
        "the next hop's first exchange (the join after the last branch; each hand-off in the "
        "linear chain), a hop's own bookkeeping and the broker included.")
    return table


def _median(runs: list[_Ops], part: Any) -> float:
    return percentile([value for ops in runs for value in part(ops)], 50)


class _Ops:
    """A run's exchanges and calls as (agent, start, end, hand-off?), ms after its creation."""

    def __init__(self, run: Run, *, fan_out: bool) -> None:
        def at(when: Any) -> float:
            return float((when - run.created_at).total_seconds() * 1000)

        self.fan_out = fan_out
        self.ops = [(e.agent or "", at(e.time) - e.detail.ms, at(e.time),
                     isinstance(e.detail, Exchanged) and e.detail.for_.startswith(HAND_OFF))
                    for e in run.events if isinstance(e.detail, Exchanged | Called)]
        self.calls = [float(e.detail.ms) for e in run.events
                      if isinstance(e.detail, Called) and e.agent in BRANCHES]

    def _first(self, agent: str) -> float:
        return min(start for who, start, _, _ in self.ops if who == agent)

    def _last(self, agents: tuple[str, ...]) -> float:
        return max(end for who, _, end, _ in self.ops if who in agents)

    def minted(self) -> list[float]:
        mints = [(start, end) for _, start, end, hand_off in self.ops if hand_off]
        if self.fan_out:  # all three at the fork
            return [max(end for _, end in mints) - min(start for start, _ in mints)]
        return [sum(end - start for start, end in mints)]

    def branch_starts(self, which: Callable[[Iterable[float]], float]) -> float:
        """The first (``min``) or second (``max``) branch's first exchange after the fork's
        last hand-off."""
        forked = max(end for _, _, end, hand_off in self.ops if hand_off)
        return which(self._first(b) for b in BRANCHES) - forked

    def branches(self) -> list[float]:
        return [self._last(BRANCHES) - min(self._first(b) for b in BRANCHES)]

    def branch_call(self) -> list[float]:
        return self.calls

    def next_starts(self) -> list[float]:
        """Each hop's start after the hop before it: the join after the later branch."""
        agents = list(dict.fromkeys(who for who, _, _, _ in self.ops))
        if self.fan_out:
            return [self._first(JOIN) - self._last(BRANCHES)]
        return [self._first(after) - self._last((before,))
                for before, after in pairwise(agents)]
