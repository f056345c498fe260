"""End to end, in one embedded system (every server, the in-memory broker and a real worker): the
process starting a run stops for good after marking it running and before its first hop's
publish returned. To the run log a start that died there and one that hangs there look the
same; this one hangs, so that it can then be let go, the worst case: a start that was only slow
publishes its copy after the take-over.

The sender's redelivery takes the delivery over, its run succeeds, the stranded run is ended,
and the late copy of its first hop does nothing: every effect happens once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
from celery.signals import task_postrun

from infrabot.testing import embedded_system
from orchestrator.ci import build_deployment_event

WAIT = 30.0
SERVICE_X_PR = ("acme", "service-x", 124)


class Hung:
    """The orchestrator's dispatch, whose first call stops before publishing until let go."""

    def __init__(self, dispatch: Any) -> None:
        self._dispatch = dispatch
        self.reached, self.go = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            self.reached.set()
            assert self.go.wait(WAIT * 2), "the hung start was never let go"
        self._dispatch(*args)


def test_a_redelivery_starts_the_run_a_start_hung_in_its_publish_stranded(
        tmp_path: Path) -> None:
    outcomes: dict[str, Any] = {}

    def record(sender: Any = None, task_id: str = "", retval: Any = None, **_: Any) -> None:
        outcomes[task_id] = retval

    task_postrun.connect(record, weak=False)
    try:
        with embedded_system(tmp_path / "state") as system:
            orchestrator = system.system.orchestrator
            secret = system.settings.webhook_secret
            assert secret is not None
            hung = Hung(orchestrator.dispatch)
            orchestrator.dispatch = hung
            headers, body = build_deployment_event(
                "sam", "service-x", "prod", "9f2c1e7", pr=124,
                secret=secret.get_secret_value().encode())
            url = f"{system.system.webhooks_url}/webhooks/github"
            answers: list[httpx.Response] = []
            first = threading.Thread(target=lambda: answers.append(
                httpx.post(url, headers=headers, content=body, timeout=WAIT * 3)))
            first.start()
            assert hung.reached.wait(WAIT), "the first start never reached its publish"
            runs = system.system.runtime.runs
            (stranded,) = runs.list(10)
            assert stranded.status == "running"

            again = httpx.post(url, headers=headers, content=body, timeout=WAIT)
            assert again.status_code == 202, again.text
            run = runs.wait(again.json()["run_id"], WAIT)
            assert (run.status, run.reason) == ("succeeded", "ok")
            ended = runs.get(stranded.run_id)
            assert ended is not None and ended.status == "failed"
            assert ended.reason == (f"superseded by run {run.run_id}: its delivery was "
                                    "received again before its first hop was published")

            hung.go.set()  # the stranded start goes on: it publishes a stale copy
            first.join(WAIT * 3)
            assert [(a.status_code, a.json()["reason"]) for a in answers] == [
                (409, "replayed_delivery")]
            late = _outcome_of(outcomes, stranded.run_id)
            assert late is not None and late["status"] == "duplicate", late

            github = system.system.service_state("github")
            comments = github.comments[SERVICE_X_PR]
            assert len(comments) == 1 and run.run_id in comments[0].body
            aws = system.system.service_state("aws")
            assert sorted(change[:2] for change in aws.changes) == [
                ("CreateTags", "i-0a1b2c3d4e5f60001"), ("CreateTags", "i-0a1b2c3d4e5f60002"),
                ("DeleteTags", "i-0a1b2c3d4e5f60003")]
            assert [e.agent for e in ended.events if e.agent is not None] == []
            replay = httpx.post(url, headers=headers, content=body, timeout=WAIT)
            assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")
    finally:
        task_postrun.disconnect(record)


def _outcome_of(outcomes: dict[str, Any], run_id: str) -> Any:
    """The result of the first hop task of ``run_id`` once the worker has run it."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for task_id, retval in list(outcomes.items()):
            if task_id.startswith(f"{run_id}."):
                return retval
        time.sleep(0.05)
    return None
