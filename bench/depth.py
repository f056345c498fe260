"""Benchmark 4: what each added actor costs.

Synthetic agents ``agent:d1`` … ``agent:d8`` (each may hand off to the next) in a
:class:`~orchestrator.identity.Directory` built here, ``max_depth`` 8, and the identity core used
directly. For chains of 1 to 8 actors: the size of a service token, the cost of verifying it
(:class:`TokenVerifier`, beside a raw ES256 verification of the same bytes), and the cost of the
exchange that issues it (verify the hand-off token, check revocation in process, decide, mint).
Growth per level is the least-squares slope over the depths, relative to the 1-actor figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench._inproc import RawJWS, context
from bench._report import Table, us
from bench._timing import Sample, compare, slope
from orchestrator.identity import (
    Agent,
    ContextRule,
    Directory,
    ExchangeRequest,
    Issuance,
    JWKSet,
    MemoryRevocationStore,
    Service,
    TokenVerifier,
    User,
    VerifierPolicy,
    decide,
    decide_root,
    generate_private_key,
    mint,
    signing_key_of,
)

MAX_DEPTH = 8
ISSUER = "http://127.0.0.1:8700"
SERVICE_URL = "http://127.0.0.1:8703"
SCOPES = ("urn:infra:infrastructure:read", "urn:infra:infrastructure:tag",
          "urn:infra:infrastructure:clean")
GOAL_PERCENT = 5.0


def agent(level: int) -> str:
    return f"agent:d{level}"


def directory(depth: int = MAX_DEPTH) -> Directory:
    agents = {agent(i): Agent(allowed_scopes=SCOPES,
                              hands_off_to=(agent(i + 1),) if i < depth else ())
              for i in range(1, depth + 1)}
    return Directory(users={"user:bench": User(permissions=SCOPES)}, agents=agents,
                     clients={"client:bench": {"trusted": True}},  # type: ignore[dict-item]
                     services={"aws": Service(scopes=SCOPES)},
                     context_rules=(ContextRule(environment="prod",
                                                require_trigger="ci_pipeline"),))


def run(*, iterations: int = 1000, rounds: int = 5, depth: int = MAX_DEPTH) -> list[Table]:
    key = signing_key_of(generate_private_key("ES256"), "ES256")
    d = directory(depth)
    issuance = Issuance(issuer=ISSUER, services={SERVICE_URL: "aws"}, ttl=600,
                        max_depth=depth, revocation_url=f"{ISSUER}/revoke",
                        log_url=f"{ISSUER}/audit")
    verifier = TokenVerifier(JWKSet.of([key.public]),
                             VerifierPolicy(issuer=ISSUER, allowed_algs=("ES256",),
                                            max_depth=depth))
    registry = MemoryRevocationStore()
    now = int(time.time())
    grant = decide_root("user:bench", list(SCOPES), context(), agent(1), d, issuance,
                        client="client:bench", user_version=0,
                        registry_epoch=registry.standing("user:bench").registry_epoch,
                        now=now)
    handoff = mint(grant.claims, key)
    ops: dict[str, Callable[[int], object]] = {}
    sizes: dict[int, int] = {}
    for level in range(1, depth + 1):
        actor = agent(level)

        def exchange(_i: int, subject_token: str = handoff, actor: str = actor) -> str:
            subject = verifier.verify(subject_token, audience=ISSUER, now=now)
            registry.check(subject.claims)
            request = ExchangeRequest(subject=subject, actor=actor, resource=SERVICE_URL,
                                      scopes=frozenset({"urn:infra:infrastructure:clean"}))
            return mint(decide(request, d, issuance, now=now).claims, key)

        token = exchange(0)
        sizes[level] = len(token)
        ops[f"verify {level}"] = _verify_op(verifier, token, now)
        ops[f"raw {level}"] = RawJWS(token, key.public.key).verify  # type: ignore[arg-type]
        ops[f"exchange {level}"] = exchange
        if level < depth:
            subject = verifier.verify(handoff, audience=ISSUER, now=now)
            handoff = mint(decide(ExchangeRequest(subject=subject, actor=actor,
                                                  audience=agent(level + 1)),
                                  d, issuance, now=now).claims, key)
    samples = compare(ops, iterations, rounds, warmup=10)
    rows = [(level, sizes[level], samples[f"verify {level}"], samples[f"raw {level}"],
             samples[f"exchange {level}"]) for level in range(1, depth + 1)]
    return [_table(rows, iterations, rounds)]


def _verify_op(verifier: TokenVerifier, token: str, now: int) -> Callable[[int], object]:
    return lambda _: verifier.verify(token, audience=SERVICE_URL, now=now)


def _table(rows: list[tuple[int, int, Sample, Sample, Sample]], n: int, r: int) -> Table:
    table = Table("Depth: chains of 1 to 8 actors (max_depth 8, identity core in process)",
                  ["actors", "token bytes", "verify", "raw verify (same bytes)",
                   "verify beyond raw", "exchange (verify + revocation + decide + mint)"])
    for level, size, verify, raw, exch in rows:
        table.add(level, size, us(verify.median_us), us(raw.median_us),
                  us(verify.median_us - raw.median_us), us(exch.median_us))
    if len(rows) > 1:
        xs = [row[0] for row in rows]

        def growth(values: list[float], unit: str = "µs") -> str:
            s = slope(xs, values)
            return f"{s:+,.1f} {unit}/level ({100 * s / values[0]:+.1f}%)"

        table.add("**growth per level**", growth([float(row[1]) for row in rows], "B"),
                  growth([row[2].median_us for row in rows]),
                  growth([row[3].median_us for row in rows]),
                  growth([row[2].median_us - row[3].median_us for row in rows]),
                  growth([row[4].median_us for row in rows]))
    table.notes += [
        (f"Median of {r} interleaved rounds x {n} operations per depth. Growth: "
        "least-squares slope over the depths, as a percentage of the 1-actor figure. Every "
        "level adds an `act` object and an ancestor `jti` to the token."),
        (f"Goal: under {GOAL_PERCENT:g}% growth per level beyond the bytes themselves (the raw "
        "verify column is what the bytes cost the signature check)."),
    ]
    return table
