"""Benchmark 11: what issue 16 costs a delegated run, in one run: DPoP (RFC 9449) and
delegator-confirmed chains against plain bearer tokens.

The same cluster as the end-to-end benchmark (one ``infrabot serve`` on Redis, two ``infrabot
worker -c 1``), started three times per round: **dpop+chain** (the defaults: every exchange and
every service call carries a proof, every token is bound, and every hand-off carries its
delegator's signed record, which the server verifies and attests and AWS verifies with the
whole chain), **dpop** (``INFRABOT_DELEGATION_RECORDS=false``: DPoP only) and **unbound**
(``INFRABOT_DPOP_BINDING=false`` too: bearer tokens, no records). The two forms without records
run on a copy of the directory where AWS does not require confirmed chains. Rounds rotate the
order of the forms, so a busy patch of a shared machine falls on all. Per form: p50/p95 latency of runs one at a time,
the throughput of a burst, and the CPU each process group used per run during the burst
(/proc). Beside them, in process: what one proof costs to make and to verify, against the raw
ES256 signature it cannot avoid.

Goal (issue 16): at most 25% more CPU per delegated run with DPoP and chains than unbound.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench._cluster import Cluster
from bench._report import Table, ms, ratio
from bench.end_to_end import Figures, _product
from orchestrator.config import Settings
from orchestrator.identity import (
    ProofCheck,
    ProofPolicy,
    generate_private_key,
    make_proof,
    signing_key_of,
    verify_proof,
)

CPU_GOAL = 1.25
FORMS = ("dpop+chain", "dpop", "unbound")
_WITHOUT_RECORDS = {"INFRABOT_DELEGATION_RECORDS": "false"}
GROUPS = ("serve", "workers", "redis", "driver")


def _forms(tmp: Path) -> dict[str, dict[str, str]]:
    """Each form's environment; the forms without records use a copy of the directory in which
    no service requires a confirmed chain."""
    relaxed = tmp / "workflows"
    shutil.copytree(Settings().workflows_dir, relaxed)
    directory = relaxed / "directory.yaml"
    directory.write_text("\n".join(line for line in directory.read_text().splitlines()
                                   if line.strip() != "delegation: required") + "\n")
    plain = {**_WITHOUT_RECORDS, "INFRABOT_WORKFLOWS_DIR": str(relaxed)}
    return {"dpop+chain": {}, "dpop": plain,
            "unbound": {**plain, "INFRABOT_DPOP_BINDING": "false"}}


def _measure(root: Path, redis_url: str, env: dict[str, str], *, sequential: int, burst: int,
             warmup: int, workers: int) -> Figures:
    with Cluster(root, redis_url, extra_env=dict(env)) as cluster:
        cluster.start(workers)
        return _product(cluster, "delegated", sequential=sequential, burst=burst,
                        warmup=warmup)


def _merge(parts: list[Figures]) -> Figures:
    """The rounds of one form as one set of figures: every latency, every burst's runs, time
    and CPU summed (so per-run figures are over all the form's bursts)."""
    cpu = {g: sum(p.cpu[g] for p in parts) for g in GROUPS}
    return Figures([x for p in parts for x in p.latencies_ms], sum(p.burst for p in parts),
                   sum(p.seconds for p in parts), sum(p.failed for p in parts), cpu)


def _median_us(op: Callable[[], object], count: int) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        op()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def _proof_costs(count: int) -> dict[str, float]:
    """Microseconds (medians): make a proof, verify it, and the raw ES256 sign and verify."""
    key = signing_key_of(generate_private_key("ES256"), "ES256")
    url, token = "http://127.0.0.1:8703/ec2/CreateTags", "h." + "x" * 1200 + ".s"
    now = int(time.time())
    proofs = [make_proof(key, method="POST", url=url, now=now, access_token=token)
              for _ in range(count)]
    check, policy = ProofCheck("POST", url, access_token=token), ProofPolicy()
    raw = key.private
    assert isinstance(raw, ec.EllipticCurvePrivateKey)
    message, ecdsa = os.urandom(300), ec.ECDSA(hashes.SHA256())
    signature = raw.sign(message, ecdsa)
    left = iter(proofs)
    return {
        "make": _median_us(lambda: make_proof(key, method="POST", url=url, now=now,
                                              access_token=token), count),
        "verify": _median_us(lambda: verify_proof(next(left), check, policy, now=now), count),
        "raw_sign": _median_us(lambda: raw.sign(message, ecdsa), count),
        "raw_verify": _median_us(lambda: raw.public_key().verify(signature, message, ecdsa),
                                 count),
    }


def run(redis_url: str, *, sequential: int = 20, burst: int = 40, warmup: int = 3,
        rounds: int = 2, workers: int = 2, proofs: int = 500,
        work: Path | None = None) -> list[Table]:
    parts: dict[str, list[Figures]] = {form: [] for form in FORMS}
    with tempfile.TemporaryDirectory(prefix="bench-dpop-", dir=work) as tmp:
        forms = _forms(Path(tmp))
        for index in range(rounds):
            order = [*FORMS[index % 3:], *FORMS[:index % 3]]
            for form in order:
                parts[form].append(_measure(Path(tmp) / f"{form}-{index}", redis_url,
                                            forms[form], sequential=sequential, burst=burst,
                                            warmup=warmup, workers=workers))
    figures = {form: _merge(found) for form, found in parts.items()}
    return [_table(figures, rounds, sequential, burst, workers), _proof_table(
        _proof_costs(proofs))]


def _table(f: dict[str, Figures], rounds: int, sequential: int, burst: int,
           workers: int) -> Table:
    table = Table("DPoP and confirmed chains: a delegated run against unbound, CPU by process "
                  "(ms/run)",
                  ["form", "p50 latency", "p95 latency", "throughput", "failed runs",
                   *(f"{g} ms/run" for g in GROUPS), "total ms/run", "CPU vs unbound"])
    totals = {form: sum(x.cpu.values()) / x.burst * 1000 for form, x in f.items()}
    for form in FORMS:
        x = f[form]
        table.add(f"**{form}**" if form == "dpop+chain" else form, ms(x.p50), ms(x.p95),
                  f"{x.throughput:,.1f} runs/s", x.failed,
                  *(f"{x.cpu[g] / x.burst * 1000:.1f}" for g in GROUPS),
                  f"{totals[form]:.1f}", ratio(totals[form], totals["unbound"]))
    met = totals["dpop+chain"] <= CPU_GOAL * totals["unbound"]
    table.notes += [
        (f"{rounds} rounds, each a fresh cluster per form (the order of the forms rotates from "
        f"round to round); per round {sequential} runs one at a time, then a burst of "
        f"{burst}; figures over all rounds. {workers} `infrabot worker -c 1` and one "
        "`infrabot serve` on Redis; the driver roots runs as the orchestrator does."),
        ("dpop: each of a run's 9 exchanges carries a proof (the agent signs it; the server "
        "verifies it, checks its nonce and claims its jti in Redis) and each of its 7 service "
        "calls another (the service verifies it and claims its jti in the round trip that "
        "checks revocation). dpop+chain: also each of the 2 hand-offs carries the delegator's "
        "signed record (the server verifies it and signs its attestation) and the services "
        "verify each record of a token's chain (2 signatures a record). Unbound: "
        "INFRABOT_DPOP_BINDING=false and no records."),
        (f"Goal: DPoP and chains at most {CPU_GOAL}x the unbound CPU per run "
        f"({ratio(totals['dpop+chain'], totals['unbound'])}: {'met' if met else 'NOT met'})."),
    ]
    return table


def _proof_table(costs: dict[str, float]) -> Table:
    table = Table("DPoP: one proof in process (ES256, median µs)",
                  ["operation", "proof", "raw ES256 signature", "overhead"])
    table.add("make (agent)", f"{costs['make']:.1f}", f"{costs['raw_sign']:.1f}",
              ratio(costs["make"], costs["raw_sign"]))
    table.add("verify (server, service)", f"{costs['verify']:.1f}", f"{costs['raw_verify']:.1f}",
              ratio(costs["verify"], costs["raw_verify"]))
    table.notes += [("make_proof and verify_proof (header, jwk, signature, htm, htu, iat, ath) "
                    "against cryptography's bare ES256 sign and verify of 300 bytes.")]
    return table
