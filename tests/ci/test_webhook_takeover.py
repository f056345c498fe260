"""A receiver that claimed a delivery and then stopped mid-start (killed, or parked on a lock: a
request that never finishes looks the same to the database) must not lose the event: the
sender's redelivery of it is not a replay. It takes the claim over and starts the run, once,
ending the run the stopped start had left ``pending`` (or ``running``, its first hop never
received); a run whose first hop was received keeps the redelivery refused 409. The take-over is
exclusive: the parked start, resumed, publishes nothing (or a stale copy) and is answered 409; of
concurrent redeliveries one starts the run.

Over real HTTP, with the real orchestrator and a real run log (SQLite and PostgreSQL); the
start is parked in the root grant (the run created, ``pending``), in the broker (the run
``running``) or before the orchestrator (no run created), or its claim is written as a receiver
killed between the run log's claim and the replay cache's leaves it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator.audit import AuditStore
from orchestrator.ci import CIEvent, WebhookReceiver, build_deployment_event
from orchestrator.ci._replay import content_keys
from orchestrator.errors import Unavailable
from orchestrator.identity import Context, Directory, MemoryRevocationStore
from orchestrator.orchestration import Orchestrator
from orchestrator.runs import HopJournal, Run, RunStore
from orchestrator.workflows import load_workflows
from tests._postgres import BACK_ENDS, store_target

from .conftest import SECRET, serving

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
WAIT = 30.0


class Park:
    """Where a start stops, once, until :meth:`resume`; ``reached`` when one stopped there."""

    def __init__(self) -> None:
        self.armed = True
        self.reached = threading.Event()
        self._go = threading.Event()
        self._lock = threading.Lock()

    def here(self) -> None:
        with self._lock:
            armed, self.armed = self.armed, False
        if armed:
            self.reached.set()
            assert self._go.wait(WAIT), "the parked start was never resumed"

    def resume(self) -> None:
        self._go.set()


@dataclass
class Auth:
    """Grants what is asked (a root token naming its run); parks the grant at ``park`` (once);
    ``revoked``: the tokens revoked (RFC 7009)."""

    park: Park | None = None
    revoked: list[str] = field(default_factory=list)

    def revoke(self, token: str) -> None:
        self.revoked.append(token)

    def root_token(self, user: str, needed: list[str], ctx: Context,
                   first_agent: str) -> dict[str, Any]:
        if self.park is not None:
            self.park.here()
        return {"access_token": f"root-of-{ctx.run_id}", "scope": " ".join(needed),
                "expires_in": 300}


@dataclass
class Broker:
    """Records the run of each first hop published; parks at ``park`` first."""

    published: list[str] = field(default_factory=list)
    park: Park | None = None

    def __call__(self, agent: str, run_id: str, *_: str) -> None:
        if self.park is not None:
            self.park.here()
        self.published.append(run_id)


class Registry(MemoryRevocationStore):
    """The replay cache and revocation registry; ``runs_revoked``: every run revoked, in order;
    while ``down`` is set, a revocation by run is :class:`Unavailable`."""

    def __init__(self) -> None:
        super().__init__()
        self.runs_revoked: list[str] = []
        self.down = False

    def revoke_run(self, run_id: str, *, expires_at: int | None = None) -> bool:
        if self.down:
            raise Unavailable("registry unreachable", reason="registry_unavailable")
        self.runs_revoked.append(run_id)
        return super().revoke_run(run_id, expires_at=expires_at)


@dataclass
class Serve:
    runs: RunStore
    audit: AuditStore
    auth: Auth
    broker: Broker
    registry: Registry
    url: str
    before_start: Park | None = None

    def post(self, delivery: tuple[Mapping[str, str], bytes]) -> httpx.Response:
        headers, body = delivery
        return httpx.post(f"{self.url}/webhooks/github", headers=dict(headers), content=body,
                          timeout=WAIT + 10)

    def in_background(self, delivery: tuple[Mapping[str, str], bytes]
                      ) -> Callable[[], httpx.Response]:
        """Send ``delivery`` from another thread; the returned call waits for its answer."""
        answers: list[httpx.Response] = []
        sending = threading.Thread(target=lambda: answers.append(self.post(delivery)))
        sending.start()

        def answer() -> httpx.Response:
            sending.join(WAIT + 15)
            assert answers, "the parked delivery was never answered"
            return answers[0]
        return answer

    def runs_of(self, delivery_id: str) -> list[Run]:
        return [run for run in self.runs.list(100)
                if any(e.detail.kind == "started" and getattr(e.detail, "delivery", None)
                       == delivery_id for e in run.events)]

    def audited(self) -> list[tuple[str, str]]:
        return [(r.decision, r.reason) for r in self.audit.query(service="webhooks")]

    def revocations(self) -> list[tuple[str, str, str, str | None, str | None]]:
        """The orchestrator's audit records of runs it revoked."""
        return [(r.action, r.resource, r.reason, r.request_id, r.on_behalf_of)
                for r in self.audit.query(service="orchestrator")]


@pytest.fixture(params=BACK_ENDS)
def serve(request: pytest.FixtureRequest, tmp_path: Path,
          directory: Directory) -> Iterator[Serve]:
    with store_target(request.param, tmp_path / "runs.sqlite3") as target, \
            RunStore(target) as runs, \
            AuditStore(tmp_path / "audit.sqlite3", writer="webhooks-test") as audit:
        auth, broker, registry = Auth(), Broker(), Registry()
        orchestrator = Orchestrator(directory, load_workflows(WORKFLOWS, directory), runs,
                                    auth=auth, dispatch=broker)  # type: ignore[arg-type]
        served = Serve(runs, audit, auth, broker, registry, "")

        def start(event: CIEvent, *, run_id: str) -> str:
            if served.before_start is not None:
                served.before_start.here()
            return orchestrator.start(event, run_id=run_id)

        receiver = WebhookReceiver(SECRET, registry, directory, audit, start,
                                   deliveries=runs)
        with serving(receiver) as url:
            served.url = url
            yield served


def _delivery() -> tuple[Mapping[str, str], bytes]:
    return build_deployment_event("sam", "service-x", "prod", "9f2c1e7", pr=124, secret=SECRET)


def test_a_redelivery_takes_over_a_start_that_stopped_with_its_run_pending(
        serve: Serve) -> None:
    delivery = _delivery()
    delivery_id = delivery[0]["X-GitHub-Delivery"]
    serve.auth.park = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first start never reached the root grant"
    (orphan,) = serve.runs_of(delivery_id)
    assert orphan.status == "pending"

    again = serve.post(delivery)  # the sender's redelivery: the first was never answered
    assert again.status_code == 202, again.text
    started = again.json()["run_id"]
    assert started != orphan.run_id
    assert serve.broker.published == [started]
    ended = serve.runs.get(orphan.run_id)
    assert ended is not None and ended.status == "failed"
    assert ended.reason is not None and ended.reason.startswith("not started")

    park.resume()  # the parked start goes on: it finds its run ended and publishes nothing
    first = original()
    assert (first.status_code, first.json()["reason"]) == (409, "replayed_delivery")
    assert serve.broker.published == [started]
    replay = serve.post(delivery)  # answered now: a replay
    assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")
    assert sorted(serve.audited()) == sorted([
        ("allow", "accepted"), ("deny", "replayed_delivery"), ("deny", "replayed_delivery")])
    assert {run.status for run in serve.runs_of(delivery_id)} == {"failed", "running"}
    # the parked start's root token, minted for a run it then found ended, is revoked; the run
    # was never running, so nothing of it was published and it is not revoked by run
    assert serve.auth.revoked == [f"root-of-{orphan.run_id}"]
    assert serve.registry.runs_revoked == [] and serve.revocations() == []


def test_a_redelivery_starts_the_claimed_run_a_stopped_start_never_created(
        serve: Serve) -> None:
    delivery = _delivery()
    serve.before_start = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first delivery never reached its start"
    assert serve.runs.list(10) == []

    again = serve.post(delivery)
    assert again.status_code == 202, again.text
    started = again.json()["run_id"]
    assert serve.broker.published == [started]

    park.resume()  # the parked start creates the run its claim names: it exists already
    first = original()
    assert (first.status_code, first.json()["reason"]) == (409, "replayed_delivery")
    assert serve.broker.published == [started]
    assert [run.run_id for run in serve.runs.list(10)] == [started]


def test_a_redelivery_takes_over_a_start_parked_in_its_publish(serve: Serve) -> None:
    """Its run running, its first hop's publish never returned, no hop received it: taken over.
    The parked start, resumed, publishes a stale copy (its hop does nothing): 409."""
    delivery = _delivery()
    serve.broker.park = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first start never reached the broker"
    (orphan,) = serve.runs.list(10)
    again = serve.post(delivery)
    assert orphan.status == "running" and again.status_code == 202, again.text
    started = again.json()["run_id"]
    assert started != orphan.run_id and serve.broker.published == [started]
    ended = serve.runs.get(orphan.run_id)
    assert ended is not None and ended.status == "failed"
    assert ended.reason == (f"superseded by run {started}: its delivery was received again "
                            "before its first hop was published")
    # superseded: revoked by run before the redelivery was answered, and audited so
    assert serve.registry.runs_revoked == [orphan.run_id]
    assert serve.revocations() == [("revoke", f"run_id:{orphan.run_id}", "run_revoked",
                                    f"{orphan.run_id}.superseded", "user:sam")]
    assert serve.auth.revoked == []
    park.resume()
    first = original()
    assert (first.status_code, first.json()["reason"]) == (409, "replayed_delivery")
    assert serve.broker.published == [started, orphan.run_id]  # a stale copy: does nothing
    assert not HopJournal(serve.runs).receive(orphan.run_id, "agent:infrabot", 1)
    assert serve.auth.revoked == [f"root-of-{orphan.run_id}"]  # and its own start revoked it
    replay = serve.post(delivery)  # answered, its run started: a replay
    assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")


def test_a_redelivery_of_a_start_whose_first_hop_was_received_is_a_replay(
        serve: Serve) -> None:
    """The first hop claimed its hand-off before the publish returned: the run is alive."""
    delivery = _delivery()
    serve.broker.park = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first start never reached the broker"
    (running,) = serve.runs.list(10)
    assert HopJournal(serve.runs).receive(running.run_id, "agent:infrabot", 1)

    again = serve.post(delivery)
    assert (again.status_code, again.json()["reason"]) == (409, "replayed_delivery")
    park.resume()
    first = original()
    assert first.status_code == 202, first.text
    assert serve.broker.published == [first.json()["run_id"]] == [running.run_id]
    assert serve.auth.revoked == [] and serve.registry.runs_revoked == []  # alive: untouched


def test_of_concurrent_redeliveries_one_takes_the_claim_over(serve: Serve) -> None:
    delivery = _delivery()
    serve.auth.park = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first start never reached the root grant"

    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(serve.post(delivery)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT + 10)
    park.resume()
    answers.append(original())
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202, 409, 409, 409, 409], [a.text for a in answers]
    assert len(serve.broker.published) == 1
    assert [run.status for run in serve.runs.list(10)].count("running") == 1
    # Every run ended is one a start minted a root token for and did not hand off: the parked
    # one, and any start a later redelivery superseded in its publish (revoked by run too).
    ended = [run for run in serve.runs.list(10) if run.status == "failed"]
    assert sorted(serve.auth.revoked) == sorted(f"root-of-{run.run_id}" for run in ended)
    assert sorted(serve.registry.runs_revoked) == sorted(
        run.run_id for run in ended if (run.reason or "").startswith("superseded"))


def test_a_redelivery_takes_over_a_stopped_start_whose_run_the_deadline_ended(
        serve: Serve) -> None:
    """The run deadline ends a run left ``pending`` (``deadline_exceeded``) before the sender
    redelivers: nothing of it was published, so the redelivery still starts the event's run."""
    delivery = _delivery()
    serve.auth.park = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first start never reached the root grant"
    (orphan,) = serve.runs.list(10)
    assert serve.runs.finish(orphan.run_id, "failed", "deadline_exceeded: not finished")

    again = serve.post(delivery)
    assert again.status_code == 202, again.text
    started = again.json()["run_id"]
    assert serve.broker.published == [started] and started != orphan.run_id
    replay = serve.post(delivery)
    assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")
    park.resume()
    first = original()
    assert (first.status_code, first.json()["reason"]) == (409, "replayed_delivery")
    assert serve.broker.published == [started]


def test_a_claim_left_in_the_run_log_alone_is_taken_over(serve: Serve) -> None:
    """A receiver killed after the run log recorded its claim and before the replay cache did:
    the redelivery starts the run that claim names."""
    delivery = _delivery()
    body = delivery[1]
    for key in content_keys("deployment", json.loads(body), body):
        assert serve.runs.claim_delivery(key, ttl=3600, run_id="run-0123456789abcdef")
    again = serve.post(delivery)
    assert again.status_code == 202, again.text
    assert again.json()["run_id"] == "run-0123456789abcdef"
    assert serve.broker.published == ["run-0123456789abcdef"]
    replay = serve.post(delivery)
    assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")


def test_a_superseded_run_the_registry_cannot_revoke_is_still_taken_over(serve: Serve) -> None:
    """The take-over is committed before the revocation: a registry that cannot be reached
    then is logged, the superseded run's end stays queued for the serving process to revoke
    once it is back (``superseded``), its hop is stale all the same, and the redelivery's run
    started."""
    delivery = _delivery()
    serve.broker.park = park = Park()
    original = serve.in_background(delivery)
    assert park.reached.wait(WAIT), "the first start never reached the broker"
    (orphan,) = serve.runs.list(10)
    serve.registry.down = True
    with capture_logs() as logs:
        again = serve.post(delivery)
    assert again.status_code == 202, again.text
    assert [e["run_id"] for e in logs if e["event"] == "superseded_run_unrevoked"] == [
        orphan.run_id]
    assert serve.registry.runs_revoked == [] and serve.revocations() == []
    assert [(e.run_id, e.cause) for e in serve.runs.ended()] == [(orphan.run_id, "superseded")]
    park.resume()
    first = original()
    assert (first.status_code, first.json()["reason"]) == (409, "replayed_delivery")
    assert not HopJournal(serve.runs).receive(orphan.run_id, "agent:infrabot", 1)
