"""Redis (broker and revocation registry) restarted while runs are in flight, distributed.

The test runs its own ``redis-server --save "" --appendonly no`` on a spare port, so a restart
loses every key: the queued hops, the retries being published, the registry. What the product
must do about it, honestly:

* while Redis is down, every check that needs the registry is refused (503, never an allow):
  the webhook receiver, the authorization server (client authentication, exchange,
  introspection, health) and every service;
* a run whose queued work was lost cannot be resumed (its hand-off token was only in the lost
  message), but it must not stay ``running`` for ever: the run deadline
  (``INFRABOT_RUN_DEADLINE_SECONDS``, 15 s here) revokes it and ends it ``failed``
  (``deadline_exceeded``); without that fix these runs stayed ``running``;
* a run whose queued work survived but whose tokens were issued before the restart is refused
  (``registry_reset``): the empty registry cannot tell whether they were revoked;
* once Redis is back, new runs succeed;
* nothing happened twice and the audit trail holds exactly what was done (``_checks``).

Six runs are parked deterministically before the crash (no worker consumes the cleanup queue
yet, so their cleanup hop waits in Redis); eight more are sent just before it (in flight).
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import SplitResult

import httpx
import pytest
from e2e._harness import (
    SAM,
    accepted_run_id,
    deployment,
    first_time_counts,
)

from orchestrator.audit import StoredRecord
from orchestrator.config import SERVICE_NAMES
from orchestrator.runs import Run
from reliability._checks import assert_after_fault, wait_all_terminal
from reliability._faults import ScriptedProxy
from reliability._probes import error_of, exchange_form, read, read_tokens, root_for_infrabot
from reliability._system import FaultyDistributed
from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis
DEADLINE = 15
INFRABOT_ARGOCD = ("metrics:query", "pr:read", "comment:post", "deploy:create", "tags:create")
UNAVAILABLE = (503, "temporarily_unavailable", "revocation_unavailable")
ISSUANCES = ("token_exchange", "root_grant")  # the authorization server's audit actions


def assert_registry_calls_refused(d: FaultyDistributed, tokens: dict[str, str],
                                  root: str) -> None:
    """Redis is down: every check that needs the registry answers 503, nothing is allowed."""
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        for service in SERVICE_NAMES:
            answer = read(http, d.endpoints, service, tokens[service])
            assert error_of(answer) == UNAVAILABLE, (service, answer.text)
            assert answer.headers.get("Retry-After") == "1"
        with d.auth_client("agent:infrabot") as infrabot:
            form = exchange_form(infrabot, root, resource=d.endpoints["datadog"])
            answer = http.post(d.endpoints["auth"] + "/token", data=form)
            assert error_of(answer) == UNAVAILABLE, answer.text
            introspect = {k: v for k, v in exchange_form(infrabot, root).items()
                          if k.startswith("client_")}
            answer = http.post(d.endpoints["auth"] + "/introspect",
                               data={**introspect, "token": root})
            assert error_of(answer) == UNAVAILABLE, answer.text
        health = http.get(d.endpoints["auth"] + "/health")
        assert (health.status_code, health.json()) == \
            (503, {"status": "degraded", "reason": "revocation_unavailable"})
    webhook = d.webhook(deployment("sam"))
    assert (webhook.status_code, webhook.json()["reason"]) == (503, "replay_cache_unavailable")


@dataclass(frozen=True)
class Forwarded:
    """A request the wire forwarded to ``serve``, and the answer it got."""

    sent: datetime  # as the wire began forwarding it: ``serve`` cannot have seen it earlier
    request_id: str | None  # its X-Request-Id (an agent's call key)
    status: int
    issued: str | None  # the jti of the token the token endpoint answered with


class Wire(ScriptedProxy):
    """The scripted proxy (no faults) the workers reach ``serve`` through, noting when it
    forwarded each request and what came back: which calls may have been admitted before Redis
    went down."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: list[Forwarded] = []
        self._noted = threading.Lock()
        wire, handler = self, self._server.RequestHandlerClass

        class Noting(handler):  # type: ignore[valid-type,misc]
            def _forward(self, target: SplitResult,
                         body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                sent = datetime.now(UTC)
                status, headers, payload = super()._forward(target, body)
                wire.note(Forwarded(sent, self.headers.get("X-Request-Id"), status,
                                    issued_jti(target.path, status, payload)))
                return status, headers, payload

        self._server.RequestHandlerClass = Noting

    def note(self, forwarded: Forwarded) -> None:
        with self._noted:
            self.forwarded.append(forwarded)


def issued_jti(path: str, status: int, payload: bytes) -> str | None:
    """The jti of the access token in a token endpoint's answer (None for any other)."""
    if path != "/token" or status != 200:
        return None
    token = json.loads(payload).get("access_token")
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    segment = token.split(".")[1]
    padded = segment + "=" * (-len(segment) % 4)
    jti = json.loads(base64.urlsafe_b64decode(padded)).get("jti")
    return jti if isinstance(jti, str) else None


def sent_before_the_crash(records: Iterable[StoredRecord], forwarded: list[Forwarded],
                          down: datetime) -> set[int]:
    """The ids of the records answering a request the wire forwarded before ``down``: a call
    or an issuance ``serve`` may have admitted before Redis died, and recorded after. A
    service's record is its request's (the same X-Request-Id and status: a retry reuses the id,
    and its attempts are recorded in the order they were sent), an issuance's the one whose
    answer carried its jti."""
    queues: dict[tuple[str, int], collections.deque[Forwarded]] = collections.defaultdict(
        collections.deque)
    for each in sorted(forwarded, key=lambda f: f.sent):
        if each.request_id is not None:
            queues[(each.request_id, each.status)].append(each)
    issued_before = {f.issued for f in forwarded if f.issued is not None and f.sent < down}
    out = set()
    for record in sorted(records, key=lambda r: r.time):
        if record.service in SERVICE_NAMES and record.request_id is not None \
                and record.status is not None:
            queue = queues.get((record.request_id, record.status))
            if queue and queue.popleft().sent < down:
                out.add(record.id)
        elif record.service == "authserver" and record.action in ISSUANCES \
                and record.jti in issued_before:
            out.add(record.id)
    return out


def assert_nothing_allowed_while_down(records: list[StoredRecord], down: datetime,
                                      up: datetime, forwarded: list[Forwarded]) -> None:
    """No service call and no issuance was allowed while the registry could not answer. A call
    admitted just before the crash may be recorded later: one recorded within half a second of
    it, or one whose request reached ``serve`` before it (``sent_before_the_crash``)."""
    early = sent_before_the_crash(records, forwarded, down)
    window = [r for r in records if down + timedelta(seconds=0.5) <= r.time < up
              and r.id not in early]
    allowed = [(r.service, r.action, r.run_id) for r in window if r.decision == "allow"
               and r.service in (*SERVICE_NAMES, "authserver", "webhooks")]
    assert allowed == []
    assert {r.reason for r in window if r.service in SERVICE_NAMES} <= \
        {"revocation_unavailable"}


def test_redis_restart_mid_run_ends_every_run_and_fails_closed(
        faulty: FaultyDistributed, own_redis: RedisServer) -> None:
    d = faulty
    d.redis_url = own_redis.url(0)
    d.extra_env = {"INFRABOT_RUN_DEADLINE_SECONDS": str(DEADLINE)}
    d.serve()
    with Wire() as wire:  # no faults: it records every call the agents make, and when
        for _ in range(2):
            d.worker(queues=["infrabot", "argocd"], HTTP_PROXY=wire.url)
        parked = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(6)]
        for run_id in parked:  # handed off to CleanupAgent: the message waits in Redis
            d.wait_hop(run_id, "agent:argocd")
        tokens = read_tokens(d.auth_client, d.endpoints)
        root = root_for_infrabot(d.auth_client, "run-probe-root")["access_token"]

        in_flight = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(8)]
        own_redis.stop()  # SIGKILL: a crash; Redis kept nothing on disk
        down = datetime.now(UTC)  # stop() returns once it is dead: down from here on
        assert_registry_calls_refused(d, tokens, root)
        time.sleep(1.0)
        up = datetime.now(UTC)
        own_redis.start()

        # a fresh worker on every queue: the runs after the restart need not wait for the
        # others to reconnect (they do, with Celery's backoff)
        d.worker(HTTP_PROXY=wire.url)
        after = [accepted_run_id(d.webhook(deployment("sam"))) for _ in range(4)]
        runs = wait_all_terminal(d, [*parked, *in_flight, *after], timeout=DEADLINE + 30)
        assert_after_fault(d, runs, wire, hops_cut_off=True)

    deadline_failed = sorted(r for r, run in runs.items()
                             if run.reason and run.reason.startswith("deadline_exceeded"))
    outcomes = collections.Counter((run.status, (run.reason or "").split(":")[0])
                                   for run in runs.values())
    print(f"\nredis restart: {dict(outcomes)}")
    for run_id in parked:  # lost with Redis: ended by the deadline, cleanup never ran
        assert_deadline_failed(runs[run_id])
    with d.audit() as audit:
        records = audit.query()
        for run_id in parked:
            assert first_time_counts(audit.query(run_id=run_id)) == \
                dict.fromkeys(INFRABOT_ARGOCD, 1)
    for run_id in in_flight:
        run = runs[run_id]
        assert run.status == "succeeded" or run.reason.startswith("deadline_exceeded") or \
            (run.status == "failed" and "(registry_reset)" in run.reason), \
            (run.status, run.reason)
    assert [runs[r].status for r in after] == ["succeeded"] * len(after), d.logs()
    # Each run the deadline ended was revoked before it ended; every other one once it had
    # (its end queued while the registry was down too); each revocation is on record, once.
    revoked = sorted((r.request_id or "").rpartition(".")[::2] for r in records
                     if (r.service, r.action, r.reason) == ("orchestrator", "revoke",
                                                            "run_revoked"))
    assert revoked == sorted((r, "deadline_exceeded" if r in deadline_failed else "ended")
                             for r in runs)
    assert_nothing_allowed_while_down(records, down, up, wire.forwarded)
    probe = [r for r in records if r.run_id == "run-probe" and r.service in SERVICE_NAMES]
    assert sorted((r.service, r.decision, r.reason, r.status) for r in probe) == \
        sorted((s, "deny", "revocation_unavailable", 503) for s in SERVICE_NAMES)
    assert all(r.on_behalf_of == SAM for r in probe)
    d.assert_logs_hold_no_token()


def assert_deadline_failed(run: Run) -> None:
    assert (run.status, run.reason) == \
        ("failed", f"deadline_exceeded: not finished within {DEADLINE} s"), run
    assert run.events[-1].kind == "finished" and run.events[-1].agent is None
