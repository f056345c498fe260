"""The CI-event simulator's load run: a bounded stream of webhook deliveries against a running
system, with a mix of users, services, environments and bad events, and the summary users read
(terminal statuses, latency percentiles, exchanges per second, denials by reason).

Bounded by count and by time: it sends at most ``count`` events at ``rate`` per second and
stops waiting for runs at ``timeout``. It keeps going through faults: a send that meets a
connection error or a 502/503/504 is retried a bounded number of times with backoff, and every
event ends in exactly one count (accepted, refused by reason, lost by reason), so the report
always adds up and says what was lost. Only a receiver that never answered the first event is an
error (``TransientError``, reason ``receiver_unreachable``): nothing was started, there is
nothing to report.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.ci._app import ROUTE
from orchestrator.ci._events import SIGNATURE_HEADER, build_deployment_event, sign
from orchestrator.client import json_object, reason_of
from orchestrator.errors import TransientError
from orchestrator.runs import DENIALS, Run, RunStore

USERS = (("sam", 0.55), ("robin", 0.25), ("alex", 0.15), ("nobody", 0.05))
SERVICES = (("service-x", 0.8), ("service-y", 0.2))
ENVIRONMENTS = (("prod", 0.6), ("staging", 0.4))
TRIGGERS = (("ci_pipeline", 0.9), ("manual", 0.1))
BAD_KINDS = ("unsigned", "bad_signature", "replayed", "malformed")
SEND_ATTEMPTS = 4  # a send is tried at most this many times, waiting RETRY_BASE_SECONDS * 2**n
RETRY_BASE_SECONDS = 0.25
RETRYABLE_STATUSES = frozenset({502, 503, 504})


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


@dataclass(frozen=True)
class EventSpec:
    user: str
    service: str
    environment: str
    trigger: str
    commit: str
    pr: int | None = 124
    bad: str | None = None  # one of BAD_KINDS: sent broken on purpose
    task: str = "deploy"


def mixed_events(count: int, *, bad_ratio: float = 0.05, seed: int = 7) -> list[EventSpec]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        bad = rng.choice(BAD_KINDS) if rng.random() < bad_ratio else None
        out.append(EventSpec(_pick(rng, USERS), _pick(rng, SERVICES), _pick(rng, ENVIRONMENTS),
                             _pick(rng, TRIGGERS), f"{rng.getrandbits(28):07x}", 124, bad))
    return out


@dataclass
class EventOutcome:
    """What became of one event, in the order sent: the receiver's answer, then its run's end."""

    index: int
    http_status: int | None = None  # None: never answered (lost)
    answer: str = ""  # "accepted", or the refusal's or the fault's reason
    run_id: str | None = None
    workflow: str | None = None
    status: str | None = None  # the run's terminal status; None while unfinished
    reason: str | None = None  # the run's terminal reason
    lost: bool = False  # never accepted: a connection error or a 502/503/504 to the last try

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "http_status": self.http_status, "answer": self.answer,
                "run_id": self.run_id, "workflow": self.workflow, "status": self.status,
                "reason": self.reason, "lost": self.lost}


@dataclass
class LoadReport:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # webhook refusals by reason
    statuses: Counter[str] = field(default_factory=Counter)  # runs by terminal status
    denials: Counter[str] = field(default_factory=Counter)  # run denials by reason
    latencies_ms: list[float] = field(default_factory=list)
    exchanges: int = 0
    seconds: float = 0.0
    unfinished: int = 0
    run_ids: list[str] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)  # events never accepted, by last fault
    retries: int = 0  # sends repeated after a connection error or a 502/503/504
    outcomes: list[EventOutcome] = field(default_factory=list)  # one per event sent

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "accepted": self.accepted, "refused": dict(self.refused),
                "statuses": dict(self.statuses), "denials": dict(self.denials),
                "unfinished": self.unfinished, "lost": dict(self.lost),
                "retries": self.retries, "seconds": round(self.seconds, 3),
                "latency_ms": {f"p{q}": self.percentile(q) for q in (50, 95, 99)},
                "exchanges": self.exchanges, "run_ids": self.run_ids,
                "events": [o.as_dict() for o in self.outcomes],
                "exchanges_per_second": round(self.exchanges / self.seconds, 1)
                if self.seconds else 0.0}


def _delivery(spec: EventSpec, secret: bytes, last: tuple[dict[str, str], bytes] | None
              ) -> tuple[dict[str, str], bytes]:
    if spec.bad == "replayed" and last is not None:
        return last
    headers, body = build_deployment_event(spec.user, spec.service, spec.environment,
                                           spec.commit, spec.trigger, pr=spec.pr,
                                           repository="acme/service-x", task=spec.task,
                                           secret=secret)
    if spec.bad == "unsigned":
        headers.pop(SIGNATURE_HEADER, None)
    elif spec.bad == "bad_signature":
        headers[SIGNATURE_HEADER] = "sha256=" + "0" * 64
    elif spec.bad == "malformed":
        body = body[: len(body) // 2]
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers, body


@dataclass(frozen=True)
class _Sent:
    response: httpx.Response | None  # None: the last attempt met a connection error
    fault: str  # the last attempt's fault: "" when answered, else the error's name
    attempts: int
    answer_missed: bool  # an attempt met a connection error: it may have reached the receiver


def _post(http: httpx.Client, url: str, headers: dict[str, str], body: bytes,
          sleep: Callable[[float], None]) -> _Sent:
    """POST with bounded retries on connection errors and 502/503/504 answers."""
    missed = False
    for attempt in range(1, SEND_ATTEMPTS + 1):
        if attempt > 1:
            sleep(RETRY_BASE_SECONDS * 2 ** (attempt - 2))
        try:
            response = http.post(url, headers=headers, content=body)
        except httpx.TransportError as exc:
            missed = True
            sent = _Sent(None, type(exc).__name__, attempt, missed)
            continue
        sent = _Sent(response, "", attempt, missed)
        if response.status_code not in RETRYABLE_STATUSES:
            break
    return sent


def _account(report: LoadReport, sent: _Sent, sent_at: dict[str, float]) -> None:
    """Count one event's outcome: accepted, refused (by reason) or lost (by fault)."""
    report.retries += sent.attempts - 1
    outcome = EventOutcome(len(report.outcomes))
    report.outcomes.append(outcome)
    if sent.response is None:
        outcome.lost, outcome.answer = True, f"connection_error ({sent.fault})"
        report.lost[outcome.answer] += 1
        return
    answer = json_object(sent.response)
    reason = reason_of(sent.response)
    outcome.http_status = sent.response.status_code
    if sent.response.status_code == 202 and answer.get("run_id"):
        report.accepted += 1
        outcome.answer, outcome.run_id = "accepted", str(answer["run_id"])
        report.run_ids.append(outcome.run_id)
        sent_at[outcome.run_id] = time.perf_counter()
    elif sent.response.status_code in RETRYABLE_STATUSES:
        outcome.lost, outcome.answer = True, f"{sent.response.status_code} {reason}"
        report.lost[outcome.answer] += 1
    elif reason == "replayed_delivery" and sent.answer_missed:
        # An earlier attempt reached the receiver but its answer was lost: a run may have
        # started whose id we never learnt, so it cannot be followed.
        outcome.lost, outcome.answer = True, "answer_lost (replayed_delivery on retry)"
        report.lost[outcome.answer] += 1
    else:
        outcome.answer = str(answer.get("reason") or sent.response.status_code)
        report.refused[outcome.answer] += 1


@dataclass
class Waiting:
    """Who to tell, once, when ``seconds`` after the first accepted event no run has been
    picked up (no agent has recorded an event of any run, and none has ended)."""

    seconds: float
    tell: Callable[[list[str]], None]  # given the ids of the runs still waiting
    told: bool = False

    def check(self, since: float, picked_up: bool, pending: list[str]) -> None:
        if not (self.told or picked_up) and time.perf_counter() - since >= self.seconds:
            self.told = True
            self.tell(pending)


def run_load(webhooks_url: str, secret: bytes, runs_db: Path | str, events: list[EventSpec],
             *, rate: float, timeout: float, on_sent: Callable[[int], None] = lambda _: None,
             on_done: Callable[[int], None] = lambda _: None,
             sleep: Callable[[float], None] = time.sleep,
             waiting: Waiting | None = None) -> LoadReport:
    """Send ``events`` at ``rate``/s, then wait (until ``timeout``) for every run to end;
    ``waiting`` is told once if no run has been picked up by an agent in its time. The run log
    is opened first, read-only (nothing created or written: the simulator only follows the runs
    it sent, so it needs no more than a reader's grants): one that cannot be read, or that has
    no run log's tables yet, fails (:class:`ConfigError`) before anything is sent."""
    with RunStore(runs_db, read_only=True) as store:
        return _send_and_collect(webhooks_url, secret, store, events, rate=rate,
                                 timeout=timeout, on_sent=on_sent, on_done=on_done, sleep=sleep,
                                 waiting=waiting)


def _send_and_collect(webhooks_url: str, secret: bytes, store: RunStore,
                      events: list[EventSpec], *, rate: float, timeout: float,
                      on_sent: Callable[[int], None], on_done: Callable[[int], None],
                      sleep: Callable[[float], None], waiting: Waiting | None) -> LoadReport:
    report = LoadReport()
    started = time.perf_counter()
    deadline = started + timeout
    sent_at: dict[str, float] = {}
    last: tuple[dict[str, str], bytes] | None = None
    with httpx.Client(timeout=10) as http:
        for index, spec in enumerate(events):
            due = started + index / rate if rate > 0 else time.perf_counter()
            if time.perf_counter() > deadline:
                break
            sleep(max(0.0, due - time.perf_counter()))
            headers, body = _delivery(spec, secret, last)
            last = (dict(headers), body)
            report.sent += 1
            sent = _post(http, webhooks_url + ROUTE, headers, body, sleep)
            if sent.response is None and report.sent == 1:
                raise TransientError(sent.fault, reason="receiver_unreachable")
            _account(report, sent, sent_at)
            on_sent(report.sent)
    _collect(report, store, sent_at, deadline, on_done, waiting)
    report.seconds = time.perf_counter() - started
    return report


def _collect(report: LoadReport, store: RunStore, sent_at: dict[str, float], deadline: float,
             on_done: Callable[[int], None], waiting: Waiting | None) -> None:
    pending = dict(sent_at)
    first = min(sent_at.values(), default=0.0)
    picked_up = False
    by_run = {o.run_id: o for o in report.outcomes if o.run_id}
    while pending and time.perf_counter() < deadline:
        for run_id in list(pending):
            run = store.get(run_id)
            if run is None:
                continue
            by_run[run_id].workflow = run.workflow
            picked_up = picked_up or run.terminal or any(e.agent for e in run.events)
            if run.terminal:
                by_run[run_id].status, by_run[run_id].reason = run.status, run.reason
                _count(report, run, time.perf_counter() - pending.pop(run_id))
                on_done(len(sent_at) - len(pending))
        if pending:
            if waiting is not None:
                waiting.check(first, picked_up, list(pending))
            time.sleep(0.05)
    report.unfinished = len(pending)


def _count(report: LoadReport, run: Run, elapsed: float) -> None:
    report.statuses[run.status] += 1
    report.latencies_ms.append(run.duration_ms if run.duration_ms is not None
                               else elapsed * 1000)
    report.exchanges += sum(1 for e in run.events if e.kind == "exchanged")
    if run.status != "succeeded":
        denied = [e.detail for e in run.events if isinstance(e.detail, DENIALS)]
        reason = denied[-1].reason if denied else (run.reason or run.status)
        report.denials[reason] += 1
