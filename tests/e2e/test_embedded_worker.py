"""The embedded worker is Celery's embeddable ``WorkController`` in a thread: it runs the chain,
and when the system stops it is gone, with Celery's shutdown flag put back."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import TestWorkController
from celery.signals import worker_init
from celery.worker import WorkController, state

from e2e._harness import RUN_TIMEOUT, accepted_run_id, deployment, embedded_settings, post_webhook
from infrabot.system import running_system


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "infrabot-worker"]


def test_the_embedded_worker_runs_a_chain_and_stops_with_the_system(tmp_path: Path) -> None:
    started: list[object] = []

    def seen(sender: Any, **_: Any) -> None:
        started.append(sender)

    worker_init.connect(seen, weak=False)
    try:
        with running_system(embedded_settings(tmp_path / "state")) as system:
            assert len(_worker_threads()) == 1
            run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
            assert system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT).status == "succeeded"
    finally:
        worker_init.disconnect(seen)
    [worker] = started  # Celery's embeddable worker, not the test helper's subclass of it
    assert isinstance(worker, WorkController) and not isinstance(worker, TestWorkController)
    assert _worker_threads() == []
    assert state.should_stop is None and state.should_terminate is None
